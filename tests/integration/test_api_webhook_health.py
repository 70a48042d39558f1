"""GraphQL's `Webhook` health — lastAttemptAt, lastStatusCode, successRate24h, backlog,
disabledReason — are the dashboard's figures, from the same store statement, batched for a list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.store.dashboard import webhooks_health
from app.types import OPERATOR, Visibility

HEALTH = "{ webhooks { legacyId lastAttemptAt lastStatusCode successRate24h backlog disabledReason } }"


async def add_webhook(conn: asyncpg.Connection, seller_id: int | None, name: str, reason: str | None = None) -> int:
    return int(await conn.fetchval(
        "INSERT INTO webhooks (seller_id, name, url, entity_type, query, secret, enabled, disabled_reason)"
        " VALUES ($1, $2, 'https://erp.example.com/', 'invoice', 'q', 'whsec_x', $3, $4) RETURNING id",
        seller_id, name, reason is None, reason,
    ))


async def add_event(conn: asyncpg.Connection, webhook_id: int, seq: int, status: str,
                    attempts: list[tuple[int | None, timedelta]]) -> None:
    event_id = await conn.fetchval(
        "INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, payload_hash,"
        " changed_at) VALUES ($1, $2, 'ping', $3, $4, '{}', '\\x00', now()) RETURNING id",
        f"evt_{webhook_id}_{seq}", webhook_id, seq, status,
    )
    for status_code, ago in attempts:
        await conn.execute(
            "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, error)"
            " VALUES ($1, $2, now() - $3::interval, 5, $4, $5)",
            event_id, webhook_id, ago, status_code, None if status_code else "timeout after 15 s",
        )


async def health(pool: asyncpg.Pool, visibility: Visibility = OPERATOR) -> tuple[dict[int, dict[str, Any]], int]:
    context = make_context(pool, visibility)
    result = await schema.execute(HEALTH, context_value=context)
    assert result.errors is None and result.data is not None
    return {h["legacyId"]: h for h in result.data["webhooks"]}, context.loaders.statements


async def test_the_health_fields_are_the_dashboards_figures_in_one_statement(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO sellers (id, name) VALUES (1, 'One') ON CONFLICT DO NOTHING")
        busy = await add_webhook(conn, None, "busy")
        quiet = await add_webhook(conn, None, "quiet")
        off = await add_webhook(conn, 1, "off", reason="receiver answered 410 Gone")
        await add_event(conn, busy, 1, "delivered", [(200, timedelta(days=2))])  # older than 24 h: not counted
        await add_event(conn, busy, 2, "delivered", [(500, timedelta(hours=2)), (200, timedelta(hours=1))])
        await add_event(conn, busy, 3, "pending", [(None, timedelta(minutes=1))])
        await add_event(conn, off, 1, "failed", [(410, timedelta(minutes=5))])
        dashboard = {h.id: h for h in await webhooks_health(conn, None, limit=100)}

    by_id, statements = await health(pool)
    assert statements == 1  # the health of every webhook listed: one statement, not one per webhook
    assert by_id[busy]["lastStatusCode"] is None  # the latest attempt got no answer
    assert abs(by_id[busy]["successRate24h"] - 1 / 3) < 1e-9 and by_id[busy]["backlog"] == 1
    assert by_id[quiet] == {"legacyId": quiet, "lastAttemptAt": None, "lastStatusCode": None,
                            "successRate24h": None, "backlog": 0, "disabledReason": None}
    assert (by_id[off]["lastStatusCode"], by_id[off]["successRate24h"], by_id[off]["disabledReason"]) == (
        410, 0.0, "receiver answered 410 Gone"
    )
    for webhook_id, h in by_id.items():  # the dashboard's own figures
        d = dashboard[webhook_id]
        assert (h["lastStatusCode"], h["successRate24h"], h["backlog"], h["disabledReason"]) == (
            d.last_status_code, d.success_rate_24h, d.backlog, d.disabled_reason
        )
        assert h["lastAttemptAt"] == (d.last_attempt_at.isoformat() if d.last_attempt_at else None)

    # A seller's key sees its own webhooks' health only.
    mine, _ = await health(pool, Visibility(1))
    assert list(mine) == [off]


async def test_a_webhook_alone_also_has_its_health(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        hook = await add_webhook(conn, None, "one")
        await add_event(conn, hook, 1, "pending", [(503, timedelta(seconds=30))])
    context = make_context(pool, OPERATOR)
    result = await schema.execute(
        "query($id: ID!) { webhook(id: $id) { lastStatusCode successRate24h backlog lastAttemptAt } }",
        variable_values={"id": to_global_id("Webhook", hook)},
        context_value=context,
    )
    assert result.errors is None and result.data is not None
    got = result.data["webhook"]
    assert (got["lastStatusCode"], got["successRate24h"], got["backlog"]) == (503, 0.0, 1)
    assert datetime.fromisoformat(got["lastAttemptAt"]) > datetime.now(UTC) - timedelta(minutes=1)
