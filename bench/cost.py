"""Cost growth with batch size: SQL statements the engine runs per delivered event when 1, 10,
100 and 1,000 entities become due at once (one bulk UPDATE), for one webhook with the realistic
variant query. The engine runs in this process (app.engine.runner.Engine) so nothing else talks to the
database while it is counted.

Statements are counted by pg_stat_statements (top-level statements of every connection to the
scenario's database, BEGIN/COMMIT included) when the server preloads it; otherwise by an asyncpg
query logger on the engine's pool, which misses the LISTEN connection and is a lower bound."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from app.config import Settings
from app.store import db
from bench import dataset
from bench.context import SAMPLE_EVERY_S, Bench
from bench.report import Figure

GOAL_STATEMENTS_PER_EVENT = 0.1  # issue #5, at batches ≥ GOAL_FROM_BATCH
GOAL_FROM_BATCH = 100
SETTLE_S = 0.5  # after the last receipt: the engine records the attempt after the receiver answered
ENGINE_POOL_MAX = 20  # as `hookql serve` sizes its pool

TOP_SQL = (
    "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND query NOT ILIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 40"
)
COUNT_SQL = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND query NOT ILIKE '%pg_stat_statements%'"
)


class LastError(logging.Handler):
    """Keeps the engine's last error log line, so a stalled batch can say why."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            self.message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"


def declare(bench: Bench) -> list[Figure]:
    figures = []
    for n in bench.plan.cost_batches:
        goal = n >= GOAL_FROM_BATCH
        figures.append(
            Figure(
                f"cost.statements_per_event_batch_{n}",
                f"SQL statements per event, batch {n:,}",
                "statements/event",
                "<=" if goal else "info",
                threshold=GOAL_STATEMENTS_PER_EVENT if goal else None,
                goal=f"≤ {GOAL_STATEMENTS_PER_EVENT}" if goal else f"(goal from batch {GOAL_FROM_BATCH})",
            )
        )
    return figures


class StatementCounter:
    """Counts statements on the scenario's database: pg_stat_statements when loaded, else an
    asyncpg query logger on every connection of the engine's pool (`init`)."""

    def __init__(self, conn: asyncpg.Connection, use_stat_statements: bool) -> None:
        self.conn = conn
        self.use_stat_statements = use_stat_statements
        self.logged = 0
        self.method = "pg_stat_statements" if use_stat_statements else "asyncpg query logger (lower bound)"

    async def init(self, conn: asyncpg.Connection) -> None:
        await db.init_connection(conn)  # hookql's own codecs, as db.create_pool installs them
        conn.add_query_logger(self._log)

    def _log(self, record: object) -> None:
        self.logged += 1

    async def reset(self) -> None:
        if self.use_stat_statements:
            await self.conn.execute("SELECT pg_stat_statements_reset()")
        self.logged = 0

    async def top(self) -> list[list[Any]]:
        """The most frequent statements (pg_stat_statements only): where the count comes from."""
        if not self.use_stat_statements:
            return []
        return [[r["calls"], r["query"]] for r in await self.conn.fetch(TOP_SQL)]

    async def count(self) -> int:
        if self.use_stat_statements:
            return int(await self.conn.fetchval(COUNT_SQL))
        return self.logged


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    # Imported here: the rest of the bench runs (and reports this scenario as not measured)
    # while the engine is not there yet.
    from app.api.context import make_context
    from app.api.schema import schema
    from app.engine.runner import running_engine

    plan = bench.plan
    spec = dataset.WebhookSpec("cost", "variant", None, dataset.webhook_query("variant"))
    last_error = LastError()
    logging.getLogger("app").addHandler(last_error)
    async with bench.scenario_db("cost", [spec]) as (url, _):
        conn = await asyncpg.connect(url)
        counter = StatementCounter(conn, bench.dbs.stat_statements)
        details: dict[str, Any] = {"method": counter.method, "webhooks": 1, "debounce_ms": plan.debounce_ms}
        bench.details["cost"] = details
        if counter.use_stat_statements:
            pool = await db.create_pool(url, min_size=1, max_size=ENGINE_POOL_MAX)
        else:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=ENGINE_POOL_MAX, init=counter.init)
        settings = Settings(database_url=url, debounce_ms=plan.debounce_ms, allow_private_targets=True)
        try:
            async with running_engine(pool=pool, database_url=url, settings=settings, schema=schema,
                                      make_context=make_context):
                await asyncio.sleep(plan.debounce_ms / 1000 + SETTLE_S)  # past start-up queries
                for n in plan.cost_batches:
                    statements, elapsed = await _one_batch(bench, conn, n, counter, last_error)
                    details[str(n)] = {"statements": statements, "events": n, "seconds": round(elapsed, 3),
                                       "top": await counter.top()}
                    fig = figures[f"cost.statements_per_event_batch_{n}"]
                    fig.value = round(statements / n, 3)
                    fig.note = f"{statements:,} statements for {n:,} deliveries ({counter.method})"
        finally:
            logging.getLogger("app").removeHandler(last_error)
            await pool.close()
            await conn.close()


async def _one_batch(
    bench: Bench, conn: asyncpg.Connection, n: int, counter: StatementCounter, last_error: LastError
) -> tuple[int, float]:
    await bench.receiver.reset()
    await counter.reset()
    started = time.monotonic()
    # One statement makes n entities due together; the bench's own statement is not the engine's.
    await conn.execute(
        "UPDATE variants SET barcode = 'cost' || $1::int || '-' || id"
        " WHERE id IN (SELECT id FROM variants ORDER BY id LIMIT $1)",
        n,
    )
    bench_statements = 1
    deadline = started + bench.plan.cost_timeout_s
    while (got := await bench.receiver.count()) < n:
        if time.monotonic() > deadline:
            why = f"; engine said: {last_error.message}" if last_error.message else ""
            raise RuntimeError(f"batch {n}: {got} of {n} deliveries after {bench.plan.cost_timeout_s:.0f} s{why}")
        await asyncio.sleep(SAMPLE_EVERY_S / 5)
    elapsed = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)
    return await counter.count() - bench_statements, elapsed
