"""Runs the real engine in-process for a test: pool, transport, listener and dispatcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from app.api.context import make_context
from app.api.schema import schema
from app.config import Settings
from app.engine.runner import Engine
from app.engine.runner import running_engine as engine_running
from app.policy.signing import new_secret
from app.store import db

FAST = Settings(debounce_ms=50, max_delay_ms=500, retry_base_ms=20, retry_max_ms=200, allow_private_targets=True)
INVOICE_QUERY = (
    "query($id: ID!) { node(id: $id) { ... on Invoice { id status total { amount } lineItems { quantity } } } }"
)


@dataclass
class Running:
    pool: asyncpg.Pool
    engine: Engine
    settings: Settings


@asynccontextmanager
async def running_engine(database_url: str, settings: Settings = FAST) -> AsyncIterator[Running]:
    pool = await db.create_pool(database_url, min_size=2, max_size=10)
    try:
        async with engine_running(pool=pool, database_url=database_url, settings=settings, schema=schema,
                                  make_context=make_context, stop_timeout_s=2.0) as engine:
            yield Running(pool, engine, settings)
    finally:
        await pool.close()


async def add_webhook(
    pool: asyncpg.Pool,
    url: str,
    *,
    entity_type: str = "invoice",
    query: str = INVOICE_QUERY,
    seller_id: int | None = None,
    **columns: Any,
) -> tuple[int, str]:
    secret = new_secret()
    values = {
        "name": "test",
        "url": url,
        "entity_type": entity_type,
        "query": query,
        "seller_id": seller_id,
        "secret": secret,
        **columns,
    }
    cols = ", ".join(values)
    params = ", ".join(f"${i + 1}" for i in range(len(values)))
    hook_id = await pool.fetchval(f"INSERT INTO webhooks ({cols}) VALUES ({params}) RETURNING id", *values.values())
    return int(hook_id), secret


async def due_events(
    pool: asyncpg.Pool, webhook_id: int, count: int, *, leased: int = 0, due_ago_s: float = 0.0, first_entity: int = 1
) -> None:
    """`count` due events of distinct invoices (ids from `first_entity`), due `due_ago_s` ago,
    the first `leased` of them leased (in flight); their payloads are `{}`. As events stand that
    a process enqueued and did not send itself: a retry come due, a crashed process's backlog."""
    await pool.execute(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, payload, "
        "payload_hash, changed_at, next_attempt_at, leased_until) "
        "SELECT 'evt_' || $1::bigint || '_' || g, $1::bigint, 'invoice', g, 'invoice.updated', g, '{}', '\\x00', "
        "now(), now() - make_interval(secs => $4), CASE WHEN g < $5 + $3 THEN now() + interval '1 minute' END "
        "FROM generate_series($5::bigint, $5 + $2 - 1) g",
        webhook_id, count, leased, due_ago_s, first_entity,
    )


async def wait_until(predicate: Any, timeout_s: float = 15.0, interval_s: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def settled(pool: asyncpg.Pool) -> bool:
    """True once the engine has processed every input: no change left to ingest, no entity waiting
    for its debounce, no event pending (in flight or waiting to retry). Attempts are recorded after
    the receiver answers, so from here on a receiver gets nothing more until something changes."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM changes) + (SELECT count(*) FROM pending_entities) + "
        "(SELECT count(*) FROM webhook_events WHERE status = 'pending') AS left"
    )
    return bool(row["left"] == 0)


async def events(pool: asyncpg.Pool, webhook_id: int) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM webhook_events WHERE webhook_id = $1 ORDER BY id", webhook_id))


def bodies(received: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in received]


def fast(**overrides: Any) -> Settings:
    """FAST with `overrides`, checked as `hookql serve` checks its settings: a combination the
    engine would refuse (say retry_base_ms above FAST's retry_max_ms, which the backoff silently
    caps) fails here rather than testing something other than what the test says."""
    settings = replace(FAST, **overrides)
    settings.check()
    return settings
