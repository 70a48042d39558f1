"""One bench run: the database, the receiver, the limits, then each engine scenario in turn.
A scenario that cannot run (the engine is missing, a process dies, a window times out) reports
its figures as "not measured: <reason>" and the run goes on."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

from app import runtime
from bench import coalescing, cost, dataset, latency, limits, memory, neighbour, scaling, throughput
from bench.context import Bench
from bench.database import BenchDatabases
from bench.plan import Plan
from bench.receiver import ReceiverProcess
from bench.report import Figure, Report, machine_info, not_measured

# L1 is measured with as many requests in flight as one engine process has in the throughput
# run: each webhook's default `concurrency` (SPEC §4) summed over the webhooks, capped by the
# dispatcher's per-process bound.
WEBHOOK_CONCURRENCY = 10

# Scenario → its wall-clock bound in seconds (full, quick): a hung engine cannot hang the bench.
SCENARIOS: list[tuple[str, ModuleType, tuple[float, float]]] = [
    ("throughput", throughput, (120.0, 30.0)),
    ("latency", latency, (60.0, 20.0)),
    ("coalescing", coalescing, (60.0, 25.0)),
    ("cost", cost, (120.0, 30.0)),
    ("scaling", scaling, (120.0, 30.0)),
    ("memory", memory, (120.0, 30.0)),
    ("neighbour", neighbour, (90.0, 25.0)),
]

SCENARIO_NAMES = tuple(name for name, _, _ in SCENARIOS)
PEERS_SCENARIO = "peers"  # `--peers`: after the others (bench/peers/scenario.py)
PEERS_BOUND_S = (1_500.0, 180.0)  # full: 3 rounds × up to 4 systems, and graphile-worker's npm install

# What the engine scenarios need from the package; absent modules mean "not measured".
ENGINE_MODULES = ("app.engine.runner", "app.transport.http", "app.api.schema", "app.api.context")


def limit_figures() -> list[Figure]:
    return [
        Figure("limits.l1_posts_per_s", "L1 raw aiohttp POST/s", "POST/s", "limit", goal="(denominator)"),
        Figure("limits.l2_commits_per_s", "L2 INSERT+COMMIT/s", "commits/s", "limit", goal="(denominator)"),
        Figure("limits.l3_p50_ms", "L3 NOTIFY→LISTEN p50", "ms", "limit", goal="(floor)"),
        Figure("limits.l3_p99_ms", "L3 NOTIFY→LISTEN p99", "ms", "limit", goal="(floor)"),
    ]


def engine_concurrency(webhooks: int) -> int:
    try:
        from app.engine.dispatcher import MAX_IN_FLIGHT
    except Exception:  # no engine yet: one webhook's worth
        return WEBHOOK_CONCURRENCY
    return min(int(MAX_IN_FLIGHT), webhooks * WEBHOOK_CONCURRENCY)


async def measure_limits(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    concurrency = engine_concurrency(plan.webhooks)
    l1 = await limits.measure_l1(
        bench.receiver, concurrency=concurrency, duration_s=plan.l1_s, warmup_s=plan.l1_warmup_s
    )
    bench.l1_posts_per_s = l1["posts_per_s"]
    figures["limits.l1_posts_per_s"].value = round(l1["posts_per_s"], 1)
    figures["limits.l1_posts_per_s"].note = f"{l1['mean_body_bytes']} B bodies, {concurrency} in flight"
    async with bench.dbs.fresh("l2") as url:
        conn = await asyncpg.connect(url)
        try:
            product_id = int(await conn.fetchval("SELECT min(id) FROM products"))
        finally:
            await conn.close()
        l2 = await limits.measure_l2(url, product_id, duration_s=plan.l2_s)
    figures["limits.l2_commits_per_s"].value = round(l2["commits_per_s"], 1)
    figures["limits.l2_commits_per_s"].note = f"{l2['connections']} connections, capture triggers on"
    l3 = await limits.measure_l3(bench.dbs.server_url, samples=plan.l3_samples, duration_s=plan.l3_max_s)
    figures["limits.l3_p50_ms"].value = round(l3["p50_ms"], 2)
    figures["limits.l3_p99_ms"].value = round(l3["p99_ms"], 2)
    figures["limits.l3_p99_ms"].note = f"{l3['samples']} round trips, {l3['lost']} lost"
    bench.details["limits"] = {"l1": l1, "l2": l2, "l3": l3}


def engine_missing() -> str | None:
    """Why the engine scenarios cannot run, or None."""
    for name in ENGINE_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # missing module, or one that fails to import
            return f"{name} unavailable ({type(exc).__name__}: {exc})".replace("\n", " ")[:200]
    return None


def queries_rejected() -> str | None:
    """The bench's webhook queries must pass hookql's own validation, as registered ones would."""
    try:
        from app.api.schema import schema
        from app.evaluation.compile import CompiledQuery, compile_query
        from app.types import EntityType
    except Exception:
        return None  # nothing to validate with; the engine will say if it disagrees
    for entity_type in dataset.ENTITY_TYPES:
        result = compile_query(schema, dataset.webhook_query(entity_type), EntityType(entity_type))
        if not isinstance(result, CompiledQuery):
            return f"the bench's {entity_type} query is invalid: {result}"
    return None


async def run_scenario(
    bench: Bench, report: Report, name: str, figures: list[Figure], coro: Any, budget_s: float
) -> None:
    by_key = {f.key: f for f in figures}
    started = time.monotonic()
    try:
        await asyncio.wait_for(coro(bench, by_key), budget_s)
    except TimeoutError:
        not_measured([f for f in figures if f.value is None], f"{name} exceeded its {budget_s:.0f} s bound")
    except Exception as exc:
        bench.details.setdefault("errors", {})[name] = traceback.format_exc(limit=6)
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        not_measured([f for f in figures if f.value is None], reason)
    for f in figures:
        if f.value is None and not f.reason:
            f.reason = f"{name} did not produce it"
    bench.details.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)
    report.add(figures)


async def run_bench(
    plan: Plan,
    server_url: str,
    log_dir: Path | None = None,
    only: set[str] | None = None,
    peers: bool = False,
    peer_systems: frozenset[str] = frozenset(),
    latency_at: float | None = None,
) -> Report:
    started = time.monotonic()
    report = Report(mode="quick" if plan.quick else "full")
    dbs = BenchDatabases(server_url)
    receiver = ReceiverProcess()
    logs = Path(tempfile.mkdtemp(prefix="hookql-bench-logs-")) if log_dir is None else log_dir
    try:
        report.machine = machine_info(await dbs.server_version())
        report.machine["event_loop"] = runtime.loop_name()  # the engine's, the receiver's and L1's
        await dbs.build_template()
        await receiver.start()
        bench = Bench(plan=plan, dbs=dbs, receiver=receiver, log_dir=logs, peer_systems=peer_systems,
                      latency_at=latency_at)
        bench.sellers = await _sellers(dbs)
        report.details = bench.details
        bench.details["engine_logs"] = str(logs)
        await run_scenario(bench, report, "limits", limit_figures(), measure_limits, 60.0)
        missing = engine_missing() or queries_rejected()
        for name, module, (full_s, quick_s) in SCENARIOS:
            if only is not None and name not in only:
                continue
            figures = module.declare(bench)
            if missing:
                report.add(not_measured(figures, missing))
                continue
            await run_scenario(bench, report, name, figures, module.measure, quick_s if plan.quick else full_s)
        if peers:
            from bench.peers import scenario as peers_scenario

            figures = peers_scenario.declare(bench)
            if missing:
                report.add(not_measured(figures, missing))
            else:
                full_s, quick_s = PEERS_BOUND_S
                bound_s = quick_s if plan.quick else full_s
                await run_scenario(bench, report, PEERS_SCENARIO, figures, peers_scenario.measure, bound_s)
    finally:
        await receiver.stop()
        await dbs.drop_all()
        report.duration_s = time.monotonic() - started
    if log_dir is None and report.figures and all(f.value is not None for f in report.figures):
        shutil.rmtree(logs, ignore_errors=True)  # kept only when something needs explaining
        report.details.pop("engine_logs", None)
    return report


async def _sellers(dbs: BenchDatabases) -> list[int]:
    from app.store import db

    conn = await db.connect(db.with_database(dbs.server_url, dbs.template))
    try:
        return await dataset.seller_ids(conn)
    finally:
        await conn.close()
