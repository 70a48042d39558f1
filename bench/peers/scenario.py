"""`python -m bench --peers`: hookql beside off-the-shelf PostgreSQL job queues on one workload
(bench/peers/workload.py), in the same run, on the same embedded PostgreSQL and receiver.

Each round runs every system once, on a fresh database: first a latency window at 5 updates/s
(commit → receipt per delivery, matched by invoice), then a throughput window with the producer at
full load (10 invoices per 20 ms). Rounds rotate the systems' order, so no system always runs
first or last on a machine whose other load drifts; each figure is the median over the rounds,
with the spread (min–max) in its note and every round in the JSON. The receiver checks every
delivery's Standard Webhooks signature."""

from __future__ import annotations

import bisect
import itertools
import statistics
import traceback
from collections.abc import Sequence
from typing import Any

import asyncpg

from bench.context import Bench, describe_cpu, produce_and_count, wait_quiet
from bench.peers import systems, workload
from bench.processes import EngineSettings
from bench.report import Figure
from bench.stats import percentile

HOOKQL = "hookql"
GOAL_RATIO = 2.0  # issue #14: hookql ≥ 2 × the best peer's deliveries/s
QUIET_S = 0.5  # between the latency and the throughput window: the last latency deliveries land
MIN_VERIFIED_QUICK = 20  # below this a --quick run cannot have exercised a system


def available(selected: frozenset[str] = frozenset()) -> tuple[list[systems.Peer], dict[str, str]]:
    """The peers asked for (all when none named) that can run here, and why the others cannot."""
    unknown = selected - {p.key for p in systems.PEERS}
    if unknown:
        raise ValueError(f"--peers: unknown system(s) {', '.join(sorted(unknown))}")
    ready, skipped = [], {}
    for peer in systems.PEERS:
        if selected and peer.key not in selected:
            continue
        reason = peer.missing()
        if reason is None:
            ready.append(peer)
        else:
            skipped[peer.key] = reason
    return ready, skipped


def system_keys(peers: Sequence[systems.Peer]) -> list[str]:
    return [HOOKQL, *(p.key for p in peers)]


def declare(bench: Bench) -> list[Figure]:
    peers, skipped = available(bench.peer_systems)
    for key, reason in skipped.items():
        print(f"peers: {key} skipped — {reason}", flush=True)
    runtimes = {p.key: runtime for p in peers if (runtime := p.runtime()) is not None}
    for key, runtime in runtimes.items():
        print(
            f"peers: {key} runs on node {runtime['node']} ({runtime['node_source']}: {runtime['node_path']})",
            flush=True,
        )
    bench.details["peers"] = {"skipped": skipped, "runtimes": runtimes}
    labels = {HOOKQL: f"hookql serve (debounce {bench.plan.debounce_ms} ms)", **{p.key: p.table_label() for p in peers}}
    figures = []
    for key in system_keys(peers):
        label = labels[key]
        figures += [
            Figure(
                f"peers.{key}.deliveries_per_s",
                f"{label}: deliveries/s",
                "deliveries/s",
                "info",
                goal="(hookql's ratio carries the goal)",
            ),
            Figure(
                f"peers.{key}.cpu_machine_cores",
                f"{label}: CPU, whole machine",
                "cores",
                "info",
                goal="(beside deliveries/s)",
            ),
            Figure(
                f"peers.{key}.cpu_own_cores",
                f"{label}: CPU, worker + PostgreSQL",
                "cores",
                "info",
                goal="(the machine is shared: this is the system's own)",
            ),
            Figure(
                f"peers.{key}.idle_s",
                f"{label}: seconds with no delivery at full load",
                "s",
                "info",
                goal="(a stall; summed over the rounds)",
            ),
            Figure(
                f"peers.{key}.latency_p50_ms",
                f"{label}: latency p50 at 5 updates/s",
                "ms",
                "info",
                goal="(commit → receipt)",
            ),
            Figure(
                f"peers.{key}.latency_p99_ms",
                f"{label}: latency p99 at 5 updates/s",
                "ms",
                "info",
                goal="(commit → receipt)",
            ),
        ]
    figures += [
        Figure(
            "peers.hookql_ratio_best_peer",
            "hookql deliveries/s ÷ best peer's",
            "ratio",
            ">=",
            threshold=GOAL_RATIO,
            goal=f"≥ {GOAL_RATIO:.0f} (issue #14)",
        ),
        Figure(
            "peers.unverified_deliveries",
            "peer-run deliveries failing signature check",
            "deliveries",
            "==",
            threshold=0,
            goal="0",
        ),
    ]
    return figures


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    peers, _ = available(bench.peer_systems)
    by_key = {p.key: p for p in peers}
    keys = system_keys(peers)
    details: dict[str, Any] = bench.details.setdefault("peers", {})
    details.update(
        {
            "workload": {
                "webhooks": workload.PEER_WEBHOOKS,
                "producer": f"{workload.CHANGES_PER_TICK} invoices' status per {workload.TICK_S * 1000:.0f} ms",
                "latency_load_changes_per_s": workload.LATENCY_CHANGES_PER_S,
                "rounds": plan.peers_rounds,
                "debounce_ms": plan.debounce_ms,
            },
            "versions": {p.key: p.version() for p in peers},
            "rounds": [],
        }
    )
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    failures: dict[str, str] = {}  # system → why its last failed round failed
    for r in range(plan.peers_rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            try:
                result = await run_system(bench, key, by_key.get(key), r)
            except Exception as exc:  # one system failing does not cost the others their rounds
                failures[key] = f"round {r + 1}: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                details.setdefault("errors", {})[f"{key}-r{r + 1}"] = traceback.format_exc(limit=6)
                continue
            runs[key].append(result)
            details["rounds"].append({"round": r + 1, "system": key, **result})
    fill_figures(figures, runs, plan.debounce_ms, failures)
    if plan.quick:
        for key, results in runs.items():
            verified = sum(x["verified"] for x in results)
            if verified < MIN_VERIFIED_QUICK:
                raise RuntimeError(f"{key} delivered {verified} verified deliveries, fewer than {MIN_VERIFIED_QUICK}")


async def run_system(bench: Bench, key: str, peer: systems.Peer | None, round_index: int) -> dict[str, Any]:
    label = f"peers-{key}-r{round_index + 1}"
    async with bench.dbs.fresh(label) as url:
        conn = await asyncpg.connect(url)
        try:
            if peer is None:
                secrets = await workload.hookql_setup(conn, bench.receiver.hook_url)
            else:
                secrets = await workload.peer_setup(conn, bench.receiver.hook_url)
            invoices = await workload.invoice_ids(conn)
        finally:
            await conn.close()
        if peer is None:
            settings = EngineSettings(debounce_ms=bench.plan.debounce_ms)
            async with bench.engines(["serve"], url, settings, label) as procs:
                return await windows(bench, url, invoices, secrets, [p.pid for p in procs])
        await peer.install(url)
        async with systems.peer_worker(peer, url, bench.log_dir / f"{label}.log") as proc:
            return await windows(bench, url, invoices, secrets, [proc.pid])


async def windows(
    bench: Bench, url: str, invoices: list[int], secrets: dict[str, str], pids: list[int]
) -> dict[str, Any]:
    plan = bench.plan
    # Latency first, on an empty queue; the throughput window's backlog would outlast it.
    producer = workload.InvoiceProducer(url, invoices)
    quiet = await produce_and_count(
        bench,
        url,
        [],
        window_s=plan.peers_latency_s,
        rate_per_s=workload.LATENCY_CHANGES_PER_S,
        engine_pids=pids,
        producer=producer,
        secrets=secrets,
    )
    await wait_quiet(bench, quiet_s=QUIET_S, max_s=plan.drain_s)
    receipts = (await bench.receiver.receipts())["invoice_receipts"]
    latency_stats = await bench.receiver.stats()
    samples_ms = latency_samples(quiet.producer, receipts, quiet.counted_from)
    # Then full load, from the other half of the invoices (none still within a latency delivery).
    producer = workload.InvoiceProducer(url, invoices, start=len(invoices) // 2)
    full = await produce_and_count(
        bench, url, [], window_s=plan.peers_throughput_s, engine_pids=pids, producer=producer, secrets=secrets
    )
    stats = await bench.receiver.stats()
    offered = full.producer.commits_per_s * workload.PEER_WEBHOOKS
    return {
        "deliveries_per_s": round(full.deliveries_per_s, 1),
        "offered_deliveries_per_s": round(offered, 1),
        "producer_changes_per_s": round(full.producer.commits_per_s, 1),
        "cpu_cores": full.cpu_cores,
        "cpu_own_cores": round(full.cpu_cores.get("engine", 0.0) + full.cpu_cores.get("postgresql", 0.0), 2),
        "timeline_s_deliveries": full.timeline,
        "idle_s": idle_seconds(full.timeline),
        "mean_body_bytes": round(full.mean_body_bytes),
        "latency_samples": len(samples_ms),
        "latency_p50_ms": round(percentile(samples_ms, 50), 1) if samples_ms else None,
        "latency_p99_ms": round(percentile(samples_ms, 99), 1) if samples_ms else None,
        "latency_cpu_cores": quiet.cpu_cores,
        "verified": int(stats["verified"]) + int(latency_stats["verified"]),
        "unverified": int(stats["unverified"]) + int(latency_stats["unverified"]),
    }


def idle_seconds(timeline: list[tuple[float, int]] | list[list[float]]) -> float:
    """Seconds of the full-load window in which nothing was delivered: the timeline's samples
    (about one a second, cumulative deliveries) between which the count did not move. With the
    producer offering far more than any system sends, such a second is a stall, not a lull."""
    return round(sum(b[0] - a[0] for a, b in itertools.pairwise(timeline) if b[1] == a[1]), 2)


def latency_samples(run: workload.InvoiceRun, receipts: list[list[Any]], counted_from: float) -> list[float]:
    """Commit → receipt per (change, webhook), for changes committed in the window: a receipt is
    timed from the last commit that changed its invoice before it arrived, and only the first
    receipt of that commit per webhook counts."""
    seen: set[tuple[int, str, float]] = set()
    samples = []
    for invoice_id, name, received_at in receipts:
        times = run.commits.get(invoice_id)
        if not times:
            continue
        i = bisect.bisect_right(times, received_at) - 1
        if i < 0 or times[i] < counted_from or (invoice_id, name, times[i]) in seen:
            continue
        seen.add((invoice_id, name, times[i]))
        samples.append((received_at - times[i]) * 1000)
    return samples


def spread(values: list[float]) -> str:
    return f"{min(values):,.1f}–{max(values):,.1f}" if len(values) > 1 else "one round"


def median_of(results: list[dict[str, Any]], key: str) -> tuple[float | None, list[float]]:
    values = [float(x[key]) for x in results if x.get(key) is not None]
    return (round(statistics.median(values), 2) if values else None), values


def fill_figures(
    figures: dict[str, Figure],
    runs: dict[str, list[dict[str, Any]]],
    debounce_ms: int,
    failures: dict[str, str] | None = None,
) -> None:
    """Medians over the rounds that ran; a system whose every round failed is "not measured" with
    the reason, and one that failed some rounds says so in its notes."""
    failures = failures or {}
    medians: dict[str, float] = {}
    for key, results in runs.items():
        n = len(results)
        if not results:
            for f in figures.values():
                if f.key.startswith(f"peers.{key}."):
                    f.reason = failures.get(key, "no round ran")
            continue
        rate, rates = median_of(results, "deliveries_per_s")
        fig = figures[f"peers.{key}.deliveries_per_s"]
        fig.value = rate
        offered, _ = median_of(results, "offered_deliveries_per_s")
        fig.note = f"median of {n} round(s), spread {spread(rates)}; {offered:,.0f}/s offered"
        if key in failures:
            fig.note += f"; a round failed ({failures[key]})"
        if rate is not None:
            medians[key] = rate
        cpu_groups = {
            group: statistics.median(x["cpu_cores"].get(group, 0.0) for x in results)
            for group in results[0]["cpu_cores"]
        }
        machine, machines = median_of([{"m": x["cpu_cores"].get("machine (all processes)")} for x in results], "m")
        fig = figures[f"peers.{key}.cpu_machine_cores"]
        fig.value = machine
        fig.note = f"spread {spread(machines)}; medians {describe_cpu(cpu_groups)} (the worker is `engine`)"
        own, owns = median_of(results, "cpu_own_cores")
        fig = figures[f"peers.{key}.cpu_own_cores"]
        fig.value = own
        per_delivery = [1000 * x["cpu_own_cores"] / x["deliveries_per_s"] for x in results if x["deliveries_per_s"]]
        fig.note = f"spread {spread(owns)}" + (
            f"; {statistics.median(per_delivery):.2f} ms CPU per delivery (median)" if per_delivery else ""
        )
        idle = [float(x.get("idle_s", 0.0)) for x in results]
        fig = figures[f"peers.{key}.idle_s"]
        fig.value = round(sum(idle), 2)
        fig.note = "per round " + " / ".join(f"{v:g}" for v in idle)
        for pct in (50, 99):
            value, values = median_of(results, f"latency_p{pct}_ms")
            fig = figures[f"peers.{key}.latency_p{pct}_ms"]
            fig.value = value
            samples = sum(x["latency_samples"] for x in results)
            fig.note = f"median of {n} round(s), spread {spread(values)}; {samples:,} deliveries"
            if key == HOOKQL and value is not None:
                fig.note += f"; {value - debounce_ms:.1f} ms beyond the {debounce_ms} ms debounce"
            if value is None:
                fig.reason = "no delivery was matched to a change in the latency window"
    ratio = figures["peers.hookql_ratio_best_peer"]
    peers = {k: v for k, v in medians.items() if k != HOOKQL}
    if HOOKQL in medians and peers:
        best = max(peers, key=lambda k: peers[k])
        ratio.value = round(medians[HOOKQL] / peers[best], 3) if peers[best] else None
        ratio.note = f"best peer: {best} at {peers[best]:,.0f}/s (medians)"
    else:
        ratio.reason = (
            "no peer ran (install the extra: pip install -e '.[peers]')" if not peers else "hookql not measured"
        )
    unverified = figures["peers.unverified_deliveries"]
    unverified.value = sum(x["unverified"] for results in runs.values() for x in results)
    unverified.note = f"{sum(x['verified'] for r in runs.values() for x in r):,} verified"
