"""What every scenario shares: the plan, the databases, the receiver, the log directory and what
earlier scenarios measured (L1, the peak rate)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.store import db
from bench import dataset
from bench.cpu import CpuShares
from bench.database import BenchDatabases
from bench.plan import Plan
from bench.processes import EngineProcess, EngineSettings, engines
from bench.producer import Producer, Target, load_targets
from bench.receiver import ReceiverProcess

SAMPLE_EVERY_S = 0.25  # receiver polling while a window runs: cheap, and fine enough for rates
PRODUCER_BOUND_SHARE = 0.9  # delivering this share of what was offered: the engine was not the limit
TICK_S = 0.1  # window edges are this precise
TIMELINE_EVERY_S = 1.0
FIRST_DELIVERY_MAX_S = 30.0  # an engine that delivers nothing for this long is broken, not slow


@dataclass
class Bench:
    plan: Plan
    dbs: BenchDatabases
    receiver: ReceiverProcess
    log_dir: Path
    sellers: list[int] = field(default_factory=list)  # seller ids of the bench marketplace
    details: dict[str, Any] = field(default_factory=dict)
    l1_posts_per_s: float | None = None
    peak_deliveries_per_s: float | None = None  # one serve process, full load
    # the throughput run's one-serve measurement, reused as the scaling run with as many webhooks
    serve_run: dict[str, Any] | None = None
    # `--peers a,b`: the peer systems to run beside hookql (bench/peers); empty means all
    peer_systems: frozenset[str] = frozenset()
    # `--latency-at`: the latency scenario's deliveries/s, instead of half the measured peak
    latency_at: float | None = None

    @contextlib.asynccontextmanager
    async def scenario_db(
        self,
        label: str,
        specs: Sequence[dataset.WebhookSpec] = (),
        url_for: Callable[[str], str] | None = None,
    ) -> AsyncIterator[tuple[str, list[Target]]]:
        """A fresh database with these webhooks (URLs on the receiver unless `url_for` says
        otherwise) and the producer's targets."""
        async with self.dbs.fresh(label) as url:
            conn = await db.connect(url)
            try:
                await dataset.create_webhooks(conn, specs, url_for or self.receiver.hook_url)
                targets = await load_targets(conn, self.plan.targets_per_type)
            finally:
                await conn.close()
            yield url, targets

    def engines(
        self, commands: list[str], url: str, settings: EngineSettings, label: str
    ) -> contextlib.AbstractAsyncContextManager[list[EngineProcess]]:
        return engines(commands, url, settings, self.log_dir, label)


def expected_fanout(targets: Sequence[Target], specs: Sequence[dataset.WebhookSpec]) -> float:
    """Deliveries one producer commit causes, on average: the webhooks of the changed entity's type
    that its owner's visibility admits (the operator's, and the entity's own seller's)."""
    if not targets:
        return 0.0
    total = 0
    for t in targets:
        total += sum(1 for s in specs if s.entity_type == t.entity_type and s.seller_id in (None, t.seller_id))
    return total / len(targets)


@dataclass
class Window:
    """Deliveries counted by the receiver while the producer ran."""

    producer: Any  # the producer's run: a ProducerRun, or bench.peers.workload.InvoiceRun
    deliveries_per_s: float
    counted_s: float
    counted_from: float  # monotonic time the window opened
    timeline: list[tuple[float, int]]
    deliveries_total: int
    mean_body_bytes: float
    cpu_cores: dict[str, float]  # cores used per process group during the window (bench.cpu)


async def produce_and_count(
    bench: Bench,
    url: str,
    targets: list[Target],
    *,
    window_s: float,
    rate_per_s: float | None = None,
    engine_pids: Sequence[int] = (),
    producer: Any = None,
    secrets: dict[str, str] | None = None,
) -> Window:
    """Run the producer until a counting window of `window_s` has passed; the sustained delivery
    rate is the receiver's count over that window. The window opens `warmup_s` after the first
    delivery: start-up, the first debounce and the first (largest) batches are not steady state.
    The producer keeps committing throughout, so the engine never runs out of work.

    `producer` replaces the bench's own (anything with its `run`); `secrets` (hook name → secret)
    makes the receiver check every delivery's signature."""
    await bench.receiver.reset(secrets)
    cpu = CpuShares({"engine": list(engine_pids), "receiver": [bench.receiver.pid]}, await bench.dbs.postmaster_pid())
    producer = producer or Producer(url, targets)
    stop = asyncio.Event()
    marks: list[tuple[float, int]] = []

    timeline: list[tuple[float, int]] = []  # (s since start, deliveries): shows a bursty engine

    async def sample() -> None:
        started = time.monotonic()
        first_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                count = await bench.receiver.count()
                if not timeline or now - started >= timeline[-1][0] + TIMELINE_EVERY_S:
                    timeline.append((round(now - started, 2), count))
                if first_at is None and count > 0:
                    first_at = now
                elif first_at is None and now - started > FIRST_DELIVERY_MAX_S:
                    raise RuntimeError(f"no delivery within {FIRST_DELIVERY_MAX_S:.0f} s of the first commit")
                if first_at is not None and not marks and now >= first_at + bench.plan.warmup_s:
                    marks.append((now, count))
                    cpu.start()
                elif marks and now >= marks[0][0] + window_s:
                    marks.append((now, count))
                    cpu.stop()
                    timeline.append((round(now - started, 2), count))
                    return
                await asyncio.sleep(TICK_S)
        finally:
            stop.set()

    longest_s = FIRST_DELIVERY_MAX_S + bench.plan.warmup_s + window_s + 1
    run, _ = await asyncio.gather(producer.run(duration_s=longest_s, rate_per_s=rate_per_s, stop=stop), sample())
    (t0, c0), (t1, c1) = marks
    stats = await bench.receiver.stats()
    return Window(
        producer=run,
        deliveries_per_s=(c1 - c0) / (t1 - t0),
        counted_s=t1 - t0,
        counted_from=t0,
        timeline=timeline,
        deliveries_total=c1,
        mean_body_bytes=stats["body_bytes"] / stats["count"] if stats["count"] else 0.0,
        cpu_cores=cpu.result,
    )


async def sustained(
    bench: Bench, commands: list[str], specs: Sequence[dataset.WebhookSpec], label: str, window_s: float
) -> dict[str, Any]:
    """Sustained deliveries/s of these engine processes on a fresh database with these webhooks,
    the producer at full speed; with what was offered, so a producer-bound run shows as such."""
    settings = EngineSettings(debounce_ms=bench.plan.debounce_ms)
    async with (
        bench.scenario_db(label, specs) as (url, targets),
        bench.engines(commands, url, settings, label) as procs,
    ):
        window = await produce_and_count(bench, url, targets, window_s=window_s, engine_pids=[p.pid for p in procs])
        waste = await unsent_work(url)
    fanout = expected_fanout(targets, specs)
    demand = window.producer.commits_per_s * fanout
    return {
        "deliveries_per_s": round(window.deliveries_per_s, 1),
        "counted_s": round(window.counted_s, 2),
        "producer_commits_per_s": round(window.producer.commits_per_s, 1),
        "deliveries_per_commit": round(fanout, 2),
        "offered_deliveries_per_s": round(demand, 1),
        # the engine kept up with everything offered: the figure is a lower bound of its capacity
        "producer_bound": window.deliveries_per_s >= PRODUCER_BOUND_SHARE * demand,
        # events evaluated and enqueued over the whole run, by what became of them: work that
        # went into payloads no receiver got (superseded unsent, or still waiting at the end)
        "events": waste,
        "mean_body_bytes": round(window.mean_body_bytes),
        "cpu_cores": window.cpu_cores,
        "settings": vars(settings),
        "timeline_s_deliveries": window.timeline,
    }


UNSENT_SQL = """
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'superseded' AND attempts = 0) AS superseded_unsent,
       count(*) FILTER (WHERE status = 'pending' AND attempts = 0) AS pending_unsent,
       count(*) AS enqueued
FROM webhook_events WHERE entity_type IS NOT NULL"""


async def unsent_work(url: str) -> dict[str, int]:
    """What the engine enqueued during a run, delivered or never sent (delivery did not keep up:
    the evaluation of those went for nothing)."""
    conn = await db.connect(url)
    try:
        row = await conn.fetchrow(UNSENT_SQL)
    finally:
        await conn.close()
    return {k: int(v) for k, v in row.items()}


def describe(run: dict[str, Any]) -> str:
    bound = " (producer-bound: the engine kept up)" if run["producer_bound"] else ""
    events = run.get("events") or {}
    unsent = events.get("superseded_unsent", 0) + events.get("pending_unsent", 0)
    waste = f"; {unsent:,} of {events['enqueued']:,} events enqueued never sent" if events.get("enqueued") else ""
    return (
        f"{run['producer_commits_per_s']:,.0f} commits/s × {run['deliveries_per_commit']:.1f} webhooks each = "
        f"{run['offered_deliveries_per_s']:,.0f}/s offered{bound}; {describe_cpu(run.get('cpu_cores') or {})}"
        f"{waste}"
    )


def describe_cpu(cores: dict[str, float]) -> str:
    """`cores used: engine 0.98, postgresql 0.61, …, machine 1.97 of 2`."""
    if not cores:
        return "CPU not measured"
    parts = [f"{name} {value:.2f}" for name, value in cores.items() if name not in ("cores", "machine (all processes)")]
    machine = cores.get("machine (all processes)")
    return f"cores used: {', '.join(parts)}; machine {machine:.2f} of {cores.get('cores', 0):.0f}"


async def wait_quiet(bench: Bench, *, quiet_s: float, max_s: float) -> int:
    """Wait until the receiver's count has not moved for `quiet_s` (or `max_s` passed)."""
    deadline = time.monotonic() + max_s
    last = await bench.receiver.count()
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(SAMPLE_EVERY_S)
        now_count = await bench.receiver.count()
        if now_count != last:
            last, last_change = now_count, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            break
    return last
