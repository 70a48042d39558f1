"""SQL for webhooks, their secrets and their event log, as the API uses them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from app.models import SendResult

SECRET_OVERLAP = "24 hours"  # a rotated-out secret keeps signing this long

COLUMNS = (
    "name",
    "url",
    "entity_type",
    "query",
    "events",
    "method",
    "format",
    "headers",
    "enabled",
    "skip_identical_payloads",
    "max_attempts",
    "timeout_seconds",
    "concurrency",
    "seller_id",
)


def _owner_clause(seller_id: int | None, param: int) -> str:
    return "TRUE" if seller_id is None else f"seller_id = ${param}"


async def get_webhook(conn: asyncpg.Connection, webhook_id: int, owner: int | None) -> asyncpg.Record | None:
    """The webhook if `owner` (a seller id, or None for the operator) may see it."""
    if owner is None:
        return await conn.fetchrow("SELECT * FROM webhooks WHERE id = $1", webhook_id)
    return await conn.fetchrow("SELECT * FROM webhooks WHERE id = $1 AND seller_id = $2", webhook_id, owner)


async def list_webhooks(conn: asyncpg.Connection, owner: int | None) -> list[asyncpg.Record]:
    if owner is None:
        return list(await conn.fetch("SELECT * FROM webhooks ORDER BY id"))
    return list(await conn.fetch("SELECT * FROM webhooks WHERE seller_id = $1 ORDER BY id", owner))


async def seller_exists(conn: asyncpg.Connection, seller_id: int) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM sellers WHERE id = $1", seller_id))


async def insert_webhook(conn: asyncpg.Connection, values: dict[str, Any], secret: str) -> asyncpg.Record:
    cols = [c for c in COLUMNS if c in values]
    params = ", ".join(f"${i + 1}" for i in range(len(cols) + 2))
    row = await conn.fetchrow(
        f"INSERT INTO webhooks ({', '.join(cols)}, secret, live_concurrency) VALUES ({params}) RETURNING *",
        *[values[c] for c in cols],
        secret,
        values.get("concurrency", 10),
    )
    assert row is not None
    return row


async def update_webhook(conn: asyncpg.Connection, webhook_id: int, values: dict[str, Any]) -> asyncpg.Record:
    cols = [c for c in COLUMNS if c in values and c != "seller_id"]
    sets = [f"{c} = ${i + 2}" for i, c in enumerate(cols)]
    if "concurrency" in values:  # a new ceiling resets the live (429-reduced) level
        sets.append(f"live_concurrency = ${cols.index('concurrency') + 2}")
    if values.get("enabled") is True:  # a fresh start: no old failures, full concurrency
        sets += ["disabled_reason = NULL", "failing_since = NULL"]
        if "concurrency" not in values:
            sets.append("live_concurrency = concurrency")
    row = await conn.fetchrow(
        f"UPDATE webhooks SET {', '.join(sets) or 'updated_at = now()'} WHERE id = $1 RETURNING *",
        webhook_id,
        *[values[c] for c in cols],
    )
    assert row is not None
    return row


async def delete_webhook(conn: asyncpg.Connection, webhook_id: int) -> None:
    await conn.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)


async def rotate_secret(conn: asyncpg.Connection, webhook_id: int, new_secret: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE webhooks SET previous_secret = secret, "
        f"previous_secret_expires_at = now() + interval '{SECRET_OVERLAP}', secret = $2 "
        "WHERE id = $1 RETURNING *",
        webhook_id,
        new_secret,
    )
    assert row is not None
    return row


def live_secrets(webhook: asyncpg.Record | dict[str, Any], now: datetime) -> tuple[str, ...]:
    """The secrets that sign an attempt at `now`: the current one, and the previous one during
    its overlap."""
    expires = webhook["previous_secret_expires_at"]
    if webhook["previous_secret"] and expires is not None and expires > now:
        return (webhook["secret"], webhook["previous_secret"])
    return (webhook["secret"],)


async def disable_webhook(conn: asyncpg.Connection, webhook_id: int, reason: str) -> None:
    await conn.execute("UPDATE webhooks SET enabled = false, disabled_reason = $2 WHERE id = $1", webhook_id, reason)


async def next_sequences(conn: asyncpg.Connection, webhook_id: int, count: int = 1) -> int:
    """Reserve `count` sequence numbers for a webhook; returns the first."""
    last = await conn.fetchval(
        "UPDATE webhooks SET last_sequence = last_sequence + $2 WHERE id = $1 RETURNING last_sequence",
        webhook_id,
        count,
    )
    return int(last) - count + 1


async def insert_finished_event(
    conn: asyncpg.Connection,
    *,
    public_id: str,
    webhook_id: int,
    event: str,
    sequence: int,
    status: str,
    payload: Any,
    payload_hash: bytes,
    changed_at: datetime,
    attempts: int,
) -> int:
    """An event recorded after the fact (a ping, sent synchronously)."""
    return int(
        await conn.fetchval(
            "INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, "
            "payload_hash, changed_at, attempts, finished_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) RETURNING id",
            public_id,
            webhook_id,
            event,
            sequence,
            status,
            payload,
            payload_hash,
            changed_at,
            attempts,
        )
    )


def attempt_values(event_id: int, webhook_id: int, result: SendResult) -> tuple[object, ...]:
    """A `webhook_attempts` row, in column order: what every attempt records."""
    return (
        event_id,
        webhook_id,
        result.started_at,
        result.duration_ms,
        result.status_code,
        result.response_headers,
        result.response_body,
        result.error,
    )


async def record_attempt(conn: asyncpg.Connection, event_id: int, webhook_id: int, result: SendResult) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, "
            "response_headers, response_body, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            *attempt_values(event_id, webhook_id, result),
        )
    )


async def list_events(
    conn: asyncpg.Connection, webhook_id: int, status: str | None, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first (keyset on id)."""
    return list(
        await conn.fetch(
            "SELECT * FROM webhook_events WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2) "
            "AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
            webhook_id,
            status,
            before_id,
            limit,
        )
    )


async def get_event(conn: asyncpg.Connection, event_id: int, owner: int | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT e.* FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id "
        "WHERE e.id = $1 AND ($2::bigint IS NULL OR w.seller_id = $2)",
        event_id,
        owner,
    )


async def attempts_for(conn: asyncpg.Connection, event_ids: list[int]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch("SELECT * FROM webhook_attempts WHERE event_id = ANY($1::bigint[]) ORDER BY id", event_ids)
    )


async def retry_event(conn: asyncpg.Connection, event_id: int) -> str | None:
    """Put a failed or cancelled event back in the queue, due now. Refused when a newer event for
    the same entity exists: re-sending the older state would be stale."""
    event = await conn.fetchrow("SELECT * FROM webhook_events WHERE id = $1 FOR UPDATE", event_id)
    if event is None:
        return "event not found"
    if event["status"] not in ("failed", "cancelled"):
        return f"only failed or cancelled events can be retried; this one is {event['status']}"
    if event["entity_type"] is None:
        return "a ping cannot be retried; use webhookTest"
    newer = await conn.fetchval(
        "SELECT 1 FROM webhook_events WHERE webhook_id = $1 AND entity_type = $2 AND entity_id = $3 "
        "AND id > $4 AND status IN ('pending', 'delivered', 'failed', 'cancelled')",
        event["webhook_id"],
        event["entity_type"],
        event["entity_id"],
        event_id,
    )
    if newer:
        return "a newer event for this entity exists; retrying this one would send a stale state"
    await conn.execute(
        "UPDATE webhook_events SET status = 'pending', next_attempt_at = now(), attempts = 0, "
        "finished_at = NULL WHERE id = $1",
        event_id,
    )
    return None


async def cancel_event(conn: asyncpg.Connection, event_id: int) -> str | None:
    status = await conn.fetchval(
        "UPDATE webhook_events SET status = 'cancelled', finished_at = now() "
        "WHERE id = $1 AND status = 'pending' RETURNING status",
        event_id,
    )
    if status is None:
        return "only pending events can be cancelled"
    # Forget the enqueued payload so the next change to this entity is delivered, not skipped.
    await conn.execute(
        "UPDATE webhook_entity_state s SET last_payload_hash = NULL FROM webhook_events e "
        "WHERE e.id = $1 AND s.webhook_id = e.webhook_id AND s.entity_type = e.entity_type "
        "AND s.entity_id = e.entity_id",
        event_id,
    )
    return None


async def replay(conn: asyncpg.Connection, webhook_id: int, since: datetime) -> int:
    """Re-deliver, at their current state, every entity this webhook had events for since `since`:
    forget their last payloads (so nothing is skipped as identical) and queue them for evaluation.
    Returns how many entities were queued."""
    rows = await conn.fetch(
        "SELECT DISTINCT entity_type, entity_id FROM webhook_events "
        "WHERE webhook_id = $1 AND created_at >= $2 AND entity_type IS NOT NULL",
        webhook_id,
        since,
    )
    if not rows:
        return 0
    types = [r["entity_type"] for r in rows]
    ids = [r["entity_id"] for r in rows]
    await conn.execute(
        "UPDATE webhook_entity_state SET last_payload_hash = NULL WHERE webhook_id = $1 "
        "AND (entity_type, entity_id) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))",
        webhook_id,
        types,
        ids,
    )
    await conn.execute(
        "INSERT INTO changes (entity_type, entity_id, action, seller_id) "
        "SELECT u.t, u.i, 'updated', CASE u.t "
        " WHEN 'invoice' THEN (SELECT seller_id FROM invoices WHERE id = u.i)"
        " WHEN 'variant' THEN (SELECT p.seller_id FROM variants v"
        "   JOIN products p ON p.id = v.product_id WHERE v.id = u.i)"
        " ELSE (SELECT i.seller_id FROM refund_requests r"
        "   JOIN invoices i ON i.id = r.invoice_id WHERE r.id = u.i)"
        " END FROM unnest($1::text[], $2::bigint[]) AS u(t, i)",
        types,
        ids,
    )
    await conn.execute("SELECT pg_notify('hookql_changes', '')")
    return len(rows)
