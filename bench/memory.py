"""Memory: peak RSS of one `serve` process while a backlog of webhooks × entities events builds up
with every receiver down (connection refused), against its RSS when idle after a warm-up.

The backlog is made the way production makes one: a bulk UPDATE of 1,000 variants while 100
operator webhooks (sharing one query, as subscribers of a price feed would) listen — the engine
itself evaluates and enqueues the 100,000 events and tries each once. The retry delay is long,
so they stay pending: the SPEC says backlogs live in PostgreSQL, not in the engine's memory."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench import dataset
from bench.context import Bench
from bench.processes import EngineProcess, EngineSettings, free_port
from bench.report import Figure

GOAL_GROWTH_MB = 50.0  # issue #5
RSS_EVERY_S = 0.05
DB_POLL_S = 1.0
WARMUP_ENTITIES = 10
WARMUP_MAX_S = 20.0
IDLE_SAMPLE_S = 1.0
RETRY_BASE_MS = 600_000  # failed attempts wait 10 min: the backlog stays pending during the run
MB = 2**20


def declare(bench: Bench) -> list[Figure]:
    events = bench.plan.backlog_events
    return [
        Figure("memory.idle_rss_mb", "engine RSS, idle", "MB", "info", goal="(growth carries the goal)"),
        Figure(
            "memory.peak_rss_mb",
            f"engine RSS, peak with {events:,}-event backlog",
            "MB",
            "info",
            goal="(growth carries the goal)",
        ),
        Figure(
            "memory.growth_mb",
            f"RSS growth under {events:,}-event backlog",
            "MB",
            "<=",
            threshold=GOAL_GROWTH_MB,
            goal=f"≤ {GOAL_GROWTH_MB:.0f} MB",
        ),
    ]


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    events = await conn.fetchval("SELECT count(*) FROM webhook_events")
    unfolded = await conn.fetchval("SELECT (SELECT count(*) FROM changes) + (SELECT count(*) FROM pending_entities)")
    return int(events), int(unfolded)


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    dead_port = free_port()  # nothing listens there: every attempt is refused at once
    specs = [
        dataset.WebhookSpec(f"m{i}", "variant", None, dataset.webhook_query("variant"))
        for i in range(plan.backlog_webhooks)
    ]
    settings = EngineSettings(debounce_ms=plan.debounce_ms, retry_base_ms=RETRY_BASE_MS)
    target_events = plan.backlog_events + WARMUP_ENTITIES * plan.backlog_webhooks
    async with (
        bench.scenario_db("memory", specs, url_for=lambda name: f"http://127.0.0.1:{dead_port}/hook/{name}") as (
            url,
            _,
        ),
        bench.engines(["serve"], url, settings, "memory") as procs,
    ):
        engine = procs[0]
        conn = await asyncpg.connect(url)
        try:
            # Warm-up: a few events through the whole path, so lazy imports and caches are loaded.
            await conn.execute(
                "UPDATE variants SET barcode = 'warm-' || id"
                " WHERE id IN (SELECT id FROM variants ORDER BY id DESC LIMIT $1)",
                WARMUP_ENTITIES,
            )
            deadline = time.monotonic() + WARMUP_MAX_S
            warm_events = WARMUP_ENTITIES * plan.backlog_webhooks
            while time.monotonic() < deadline:
                if (await _counts(conn))[0] >= warm_events:
                    break
                await asyncio.sleep(RSS_EVERY_S * 4)
            idle = await _peak_rss(engine, IDLE_SAMPLE_S)

            started = time.monotonic()
            await conn.execute(
                "UPDATE variants SET barcode = 'backlog-' || id"
                " WHERE id IN (SELECT id FROM variants ORDER BY id LIMIT $1)",
                plan.backlog_entities,
            )
            peak, events, built_s, unfolded = await _watch(
                engine, conn, target_events, started, plan.memory_window_s, plan.memory_hold_s
            )
        finally:
            await conn.close()
        alive = engine.alive()
    backlog = max(0, events - WARMUP_ENTITIES * plan.backlog_webhooks)
    figures["memory.idle_rss_mb"].value = round(idle / MB, 1)
    figures["memory.peak_rss_mb"].value = round(peak / MB, 1)
    growth = figures["memory.growth_mb"]
    growth.value = round((peak - idle) / MB, 1)
    complete = "" if built_s is not None else f" (window of {plan.memory_window_s:.0f} s ended first)"
    growth.note = (
        f"backlog reached {backlog:,} of {plan.backlog_events:,} events{complete}; "
        f"{plan.backlog_webhooks} webhooks × {plan.backlog_entities:,} variants, receivers refusing"
    )
    if not alive:
        growth.note += "; the engine process died during the run"
    if built_s is None:
        # Growth under a backlog that never formed says nothing about the goal: not a pass.
        growth.reason = (
            f"the engine built only {backlog:,} of {plan.backlog_events:,} backlog events in "
            f"{plan.memory_window_s:.0f} s (RSS grew {growth.value} MB meanwhile)"
        )
        growth.value = None
    details: dict[str, Any] = {
        "rss_growth_mb": round((peak - idle) / MB, 1),
        "webhooks": plan.backlog_webhooks,
        "entities": plan.backlog_entities,
        "events_reached": backlog,
        "seconds_to_build": None if built_s is None else round(built_s, 1),
        "changes_or_pending_entities_left": unfolded,
        "retry_base_ms": RETRY_BASE_MS,
    }
    bench.details["memory"] = details


async def _peak_rss(engine: EngineProcess, seconds: float) -> int:
    peak = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        peak = max(peak, engine.rss_bytes())
        await asyncio.sleep(RSS_EVERY_S)
    return peak


async def _watch(
    engine: EngineProcess,
    conn: asyncpg.Connection,
    target_events: int,
    started: float,
    window_s: float,
    hold_s: float,
) -> tuple[int, int, float | None, int]:
    """Sample RSS until the backlog is complete (all events enqueued, nothing left to fold) and
    `hold_s` more — the dispatcher is still churning — or until `window_s`; returns peak RSS,
    events, seconds to build, and changes left unfolded."""
    peak = engine.rss_bytes()
    events, unfolded = 0, 0
    built_s: float | None = None
    next_poll = 0.0
    while time.monotonic() - started < window_s and engine.alive():
        peak = max(peak, engine.rss_bytes())
        now = time.monotonic()
        if now >= next_poll:
            next_poll = now + DB_POLL_S
            events, unfolded = await _counts(conn)
            if built_s is None and events >= target_events and unfolded == 0:
                built_s = now - started
        if built_s is not None and now - started >= built_s + hold_s:
            break
        await asyncio.sleep(RSS_EVERY_S)
    return peak, events, built_s, unfolded
