"""SQL for webhooks, their secrets and their event log, as the API uses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.store.pipeline import EVENTS_CHANNEL  # wakes the dispatchers: an event became due
from app.types import SendResult

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


async def lock_seller_webhooks(conn: asyncpg.Connection, seller_id: int) -> int | None:
    """How many webhooks the seller has, holding its row lock until the transaction ends, so a
    concurrent create for the same seller waits here and then counts this one's new webhook: a
    quota checked against this count cannot be passed twice. None when there is no such seller.
    FOR NO KEY UPDATE, not FOR UPDATE: rows that reference the seller (products, invoices) take
    FOR KEY SHARE on it as they are written, and are not held up."""
    if not await conn.fetchval("SELECT 1 FROM sellers WHERE id = $1 FOR NO KEY UPDATE", seller_id):
        return None
    # A statement of its own, after the lock: READ COMMITTED gives it a snapshot that includes
    # what the previous holder of the lock committed.
    return int(await conn.fetchval("SELECT count(*) FROM webhooks WHERE seller_id = $1", seller_id))


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


async def lock_webhook(conn: asyncpg.Connection, webhook_id: int) -> bool:
    """Lock a webhook's row for the rest of the transaction (before touching its events: the
    engine's lock order); False if it no longer exists."""
    return bool(await conn.fetchval("SELECT 1 FROM webhooks WHERE id = $1 FOR NO KEY UPDATE", webhook_id))


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


async def _lock_event(conn: asyncpg.Connection, event_id: int) -> asyncpg.Record | None:
    """Lock an event's webhook row, then the event: the engine's lock order (webhooks before
    their events), so a manual action and an enqueue or a recorded outcome never deadlock, and
    no new event for this webhook can be enqueued until the caller's transaction ends."""
    webhook_id = await conn.fetchval("SELECT webhook_id FROM webhook_events WHERE id = $1", event_id)
    if webhook_id is None:
        return None
    await lock_webhook(conn, webhook_id)
    return await conn.fetchrow("SELECT * FROM webhook_events WHERE id = $1 FOR UPDATE", event_id)


async def retry_event(conn: asyncpg.Connection, event_id: int) -> str | None:
    """Put a failed or cancelled event back in the queue, due now, with a fresh attempt budget.
    Refused (the reason is returned) when another event for the same entity is pending or newer
    ones exist: re-sending the older state would be stale. Run inside a transaction."""
    event = await _lock_event(conn, event_id)
    if event is None:
        return "event not found"
    if event["status"] not in ("failed", "cancelled"):
        return f"only failed or cancelled events can be retried; this one is {event['status']}"
    if event["entity_type"] is None:
        return "a ping cannot be retried; use webhookTest"
    if event["error"] is not None:  # a budget breach (migration 0012): never had a payload to send
        return f"it was never sent ({event['error']}); the entity's next change is evaluated again"
    pair = (event["webhook_id"], event["entity_type"], event["entity_id"])
    if await conn.fetchval(
        "SELECT 1 FROM webhook_events WHERE webhook_id = $1 AND entity_type = $2 AND entity_id = $3 "
        "AND status = 'pending'",
        *pair,
    ):
        # Also what the one-pending-per-pair index would refuse.
        return "a newer event for this entity is pending; it will carry the latest state"
    if await conn.fetchval(
        "SELECT 1 FROM webhook_events WHERE webhook_id = $1 AND entity_type = $2 AND entity_id = $3 "
        "AND id > $4 AND status IN ('delivered', 'failed', 'cancelled')",
        *pair,
        event_id,
    ):
        return "a newer event for this entity exists; retrying this one would send a stale state"
    await conn.execute(
        "UPDATE webhook_events SET status = 'pending', next_attempt_at = now(), attempts = 0, "
        "leased_until = NULL, finished_at = NULL WHERE id = $1",
        event_id,
    )
    await conn.execute("SELECT pg_notify($1, '')", EVENTS_CHANNEL)
    return None


async def cancel_event(conn: asyncpg.Connection, event_id: int) -> str | None:
    """Stop a pending event. An attempt already in flight still finishes (and is recorded), but
    the event stays cancelled. Run inside a transaction."""
    event = await _lock_event(conn, event_id)
    if event is None:
        return "event not found"
    if event["status"] != "pending":
        return f"only pending events can be cancelled; this one is {event['status']}"
    await conn.execute("UPDATE webhook_events SET status = 'cancelled', finished_at = now() WHERE id = $1", event_id)
    # Forget the enqueued payload so the next change to this entity is delivered, not skipped.
    await conn.execute(
        "UPDATE webhook_entity_state SET last_payload_hash = NULL "
        "WHERE webhook_id = $1 AND entity_type = $2 AND entity_id = $3",
        event["webhook_id"],
        event["entity_type"],
        event["entity_id"],
    )
    return None


async def replay_targets(
    conn: asyncpg.Connection, webhook_id: int, entity_type: str, since: datetime
) -> list[asyncpg.Record]:
    """The entities of `entity_type` this webhook had events for since `since`, each with its
    latest event's name (`invoice.updated`, `invoice.deleted` …) and change time, in id order.
    (A webhook whose type was changed keeps its older events of the old type; pings have none.)
    Delivered and skipped events are pruned after the retention period, so `since` reaches back
    at most that far for them."""
    return list(
        await conn.fetch(
            "SELECT DISTINCT ON (entity_id) entity_type, entity_id, event, changed_at FROM webhook_events "
            "WHERE webhook_id = $1 AND entity_type = $2 AND created_at >= $3 ORDER BY entity_id, id DESC",
            webhook_id,
            entity_type,
            since,
        )
    )


@dataclass(frozen=True)
class NewEvent:
    """A pending event to enqueue for one entity of one webhook."""

    public_id: str
    entity_type: str
    entity_id: int
    event: str
    payload: Any
    payload_hash: bytes
    changed_at: datetime


async def enqueue_events(conn: asyncpg.Connection, webhook_id: int, events: Sequence[NewEvent]) -> int:
    """Enqueue pending events for one webhook, due now, as the producer would: pending events of
    the same entities are superseded, sequences are reserved, and the payloads become the ones
    later changes are compared with. Returns how many were enqueued (0 if the webhook is gone).
    Run inside a transaction; takes the webhook's row lock first (the engine's lock order)."""
    if not events or not await lock_webhook(conn, webhook_id):
        return 0
    n = len(events)
    types, ids = [e.entity_type for e in events], [e.entity_id for e in events]
    superseded = await conn.fetch(
        "UPDATE webhook_events e SET status = 'superseded', finished_at = now() "
        "FROM unnest($2::text[], $3::bigint[]) u(t, i) "
        "WHERE e.status = 'pending' AND e.webhook_id = $1 AND e.entity_type = u.t AND e.entity_id = u.i "
        "RETURNING e.id",
        webhook_id,
        types,
        ids,
    )
    first = await next_sequences(conn, webhook_id, n)
    await conn.execute(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, "
        "payload, payload_hash, changed_at) "
        "SELECT u.p, $1, u.t, u.i, u.e, u.s, u.pl, u.h, u.c FROM unnest($2::text[], $3::text[], $4::bigint[], "
        "$5::text[], $6::bigint[], $7::jsonb[], $8::bytea[], $9::timestamptz[]) u(p, t, i, e, s, pl, h, c)",
        webhook_id,
        [e.public_id for e in events],
        types,
        ids,
        [e.event for e in events],
        list(range(first, first + n)),
        [e.payload for e in events],
        [e.payload_hash for e in events],
        [e.changed_at for e in events],
    )
    if superseded:
        await conn.execute(
            "UPDATE webhook_events o SET superseded_by = n.id FROM webhook_events n "
            "WHERE o.id = ANY($1::bigint[]) AND n.status = 'pending' AND n.webhook_id = o.webhook_id "
            "AND n.entity_type = o.entity_type AND n.entity_id = o.entity_id",
            [r["id"] for r in superseded],
        )
    await conn.execute(
        "INSERT INTO webhook_entity_state (webhook_id, entity_type, entity_id, last_payload_hash) "
        "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bytea[]) "
        "ON CONFLICT (webhook_id, entity_type, entity_id) DO UPDATE SET last_payload_hash = EXCLUDED.last_payload_hash",
        webhook_id,
        types,
        ids,
        [e.payload_hash for e in events],
    )
    await conn.execute("SELECT pg_notify($1, '')", EVENTS_CHANNEL)
    return n
