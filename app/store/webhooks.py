"""Webhooks, their secrets and their event log, as the API and the dashboard use them. The
statements are in `sql/webhooks.sql`, but for creating and updating a webhook, which write only
the columns given and are composed here from COLUMNS. Enqueueing events goes through the engine's
path (`app.store.enqueue.enqueue_pending`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from app.store.delivery import EVENTS_CHANNEL, attempt_values
from app.store.enqueue import FreshEvent, enqueue_pending
from app.store.queries import load
from app.types import SendResult

Q = load("webhooks")

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
    "hmac_key",
    "hmac_header",
    "filter",
)


async def get_webhook(conn: asyncpg.Connection, webhook_id: int, owner: int | None) -> asyncpg.Record | None:
    """The webhook if `owner` (a seller id, or None for the operator) may see it."""
    return await conn.fetchrow(*Q.get_webhook(webhook_id=webhook_id, owner=owner))


async def list_webhooks(conn: asyncpg.Connection, owner: int | None) -> list[asyncpg.Record]:
    """The webhooks `owner` (a seller id, or None for the operator) may see, in id order."""
    return list(await conn.fetch(*Q.list_webhooks(owner=owner)))


async def lock_seller_webhooks(conn: asyncpg.Connection, seller_id: int) -> int | None:
    """How many webhooks the seller has, holding its row lock until the transaction ends, so a
    concurrent create for the same seller waits here and then counts this one's new webhook: a
    quota checked against this count cannot be passed twice. None when there is no such seller.
    Rows that reference the seller (products, invoices) are not held up by the lock."""
    if not await conn.fetchval(*Q.lock_seller(seller_id=seller_id)):
        return None
    # A statement of its own, after the lock: READ COMMITTED gives it a snapshot that includes
    # what the previous holder of the lock committed.
    return int(await conn.fetchval(*Q.count_seller_webhooks(seller_id=seller_id)))


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
    await conn.execute(*Q.delete_webhook(webhook_id=webhook_id))


async def rotate_secret(conn: asyncpg.Connection, webhook_id: int, new_secret: str) -> asyncpg.Record:
    """Sign with `new_secret` from now on; the old secret keeps signing for 24 hours."""
    row = await conn.fetchrow(*Q.rotate_secret(webhook_id=webhook_id, new_secret=new_secret))
    assert row is not None
    return row


async def lock_webhook(conn: asyncpg.Connection, webhook_id: int) -> bool:
    """Lock a webhook's row for the rest of the transaction (before touching its events: the
    engine's lock order); False if it no longer exists."""
    return bool(await conn.fetchval(*Q.lock_webhook(webhook_id=webhook_id)))


async def disable_webhook(conn: asyncpg.Connection, webhook_id: int, reason: str) -> None:
    await conn.execute(*Q.disable_webhook(webhook_id=webhook_id, reason=reason))


async def next_sequences(conn: asyncpg.Connection, webhook_id: int, count: int = 1) -> int:
    """Reserve `count` sequence numbers for a webhook; returns the first."""
    last = await conn.fetchval(*Q.next_sequences(webhook_id=webhook_id, count=count))
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
            *Q.insert_finished_event(
                public_id=public_id,
                webhook_id=webhook_id,
                event=event,
                sequence=sequence,
                status=status,
                payload=payload,
                payload_hash=payload_hash,
                changed_at=changed_at,
                attempts=attempts,
            )
        )
    )


async def record_attempt(conn: asyncpg.Connection, event_id: int, webhook_id: int, result: SendResult) -> int:
    """One attempt's row (a ping's), as the engine's `record_attempts` writes a batch of them."""
    (event_id, webhook_id, attempted_at, duration_ms, status_code, response_headers, response_body, error,
     method, url, request_headers, request_body) = attempt_values(event_id, webhook_id, result)
    return int(
        await conn.fetchval(
            *Q.insert_attempt(
                event_id=event_id,
                webhook_id=webhook_id,
                attempted_at=attempted_at,
                duration_ms=duration_ms,
                status_code=status_code,
                response_headers=response_headers,
                response_body=response_body,
                error=error,
                request_method=method,
                request_url=url,
                request_headers=request_headers,
                request_body=request_body,
            )
        )
    )


async def list_events(
    conn: asyncpg.Connection,
    webhook_id: int,
    status: str | None,
    before_id: int | None,
    limit: int,
    *,
    retrying: bool | None = None,
) -> list[asyncpg.Record]:
    """Newest first (keyset on id); `retrying`: see the query."""
    return list(
        await conn.fetch(
            *Q.list_events(webhook_id=webhook_id, status=status, retrying=retrying, before_id=before_id, limit=limit)
        )
    )


async def get_event(conn: asyncpg.Connection, event_id: int, owner: int | None) -> asyncpg.Record | None:
    """The event if `owner` (a seller id, or None for the operator) may see its webhook."""
    return await conn.fetchrow(*Q.get_event(event_id=event_id, owner=owner))


async def attempts_for(conn: asyncpg.Connection, event_ids: list[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch(*Q.attempts_for(event_ids=event_ids)))


async def _lock_event(conn: asyncpg.Connection, event_id: int) -> asyncpg.Record | None:
    """Lock an event's webhook row, then the event: the engine's lock order (webhooks before
    their events), so a manual action and an enqueue or a recorded outcome never deadlock, and
    no new event for this webhook can be enqueued until the caller's transaction ends."""
    webhook_id = await conn.fetchval(*Q.event_webhook(event_id=event_id))
    if webhook_id is None:
        return None
    await lock_webhook(conn, webhook_id)
    return await conn.fetchrow(*Q.lock_event(event_id=event_id))


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
    if event["error"] is not None:  # a budget breach: never had a payload to send
        return f"it was never sent ({event['error']}); the entity's next change is evaluated again"
    pair = {"webhook_id": event["webhook_id"], "entity_type": event["entity_type"], "entity_id": event["entity_id"]}
    if await conn.fetchval(*Q.pending_for_entity(**pair)):
        # Also what the one-pending-per-pair index would refuse.
        return "a newer event for this entity is pending; it will carry the latest state"
    if await conn.fetchval(*Q.newer_for_entity(**pair, event_id=event_id)):
        return "a newer event for this entity exists; retrying this one would send a stale state"
    await conn.execute(*Q.requeue_event(event_id=event_id))
    await conn.execute(*Q.notify(channel=EVENTS_CHANNEL))  # due now and claimable: wake the dispatchers
    return None


async def send_now(conn: asyncpg.Connection, event_id: int) -> str | None:
    """Make a pending event due now and wake the dispatchers: after a receiver is fixed, its
    waiting events need not sit out their retry backoff. Refused (the reason is returned) for an
    event that is not pending, is being sent right now, or whose webhook is disabled (nothing is
    sent for it). Run inside a transaction."""
    event = await _lock_event(conn, event_id)
    if event is None:
        return "event not found"
    if event["status"] != "pending":
        return f"only pending events can be sent now; this one is {event['status']}"
    webhook = await get_webhook(conn, event["webhook_id"], None)
    if webhook is not None and not webhook["enabled"]:
        return "its webhook is disabled; enable it first"
    if await conn.execute(*Q.send_now(event_id=event_id)) == "UPDATE 0":
        return "it is being sent right now"
    await conn.execute(*Q.notify(channel=EVENTS_CHANNEL))
    return None


async def resend_event(conn: asyncpg.Connection, event_id: int, public_id: str) -> str | None:
    """Deliver a delivered event again: a fresh event (`public_id`, the next sequence number,
    due now) with the same name, change time and payload, enqueued through the engine's one
    enqueue path (`enqueue.enqueue_pending`, as webhookReplay does). Refused (the reason is
    returned) unless the event is delivered and nothing newer for its entity exists: sending an
    older state again after a newer one would be stale. Run inside a transaction."""
    event = await _lock_event(conn, event_id)
    if event is None:
        return "event not found"
    if event["status"] != "delivered":
        return f"only delivered events can be resent; this one is {event['status']}"
    if event["entity_type"] is None:
        return "a ping cannot be resent; use webhookTest"
    pair = {"webhook_id": event["webhook_id"], "entity_type": event["entity_type"], "entity_id": event["entity_id"]}
    if await conn.fetchval(*Q.pending_for_entity(**pair)):
        return "a newer event for this entity is pending; it will carry the latest state"
    if await conn.fetchval(*Q.newer_for_entity(**pair, event_id=event_id)):
        return "a newer event for this entity exists; resending this one would send a stale state"
    text = await conn.fetchval(*Q.event_payload_text(event_id=event_id))
    fresh = FreshEvent(
        public_id=public_id,
        entity_type=event["entity_type"],
        entity_id=event["entity_id"],
        event=event["event"],
        payload=text,
        payload_hash=event["payload_hash"],
        changed_at=event["changed_at"],
    )
    if not await enqueue_pending(conn, event["webhook_id"], [fresh]):
        return "event not found"
    return None


async def event_id_by_public_id(conn: asyncpg.Connection, public_id: str) -> int | None:
    found: int | None = await conn.fetchval(*Q.event_id_by_public_id(public_id=public_id))
    return found


async def cancel_event(conn: asyncpg.Connection, event_id: int) -> str | None:
    """Stop a pending event. An attempt already in flight still finishes (and is recorded), but
    the event stays cancelled. Run inside a transaction."""
    event = await _lock_event(conn, event_id)
    if event is None:
        return "event not found"
    if event["status"] != "pending":
        return f"only pending events can be cancelled; this one is {event['status']}"
    await conn.execute(*Q.cancel_event(event_id=event_id))
    # Forget the enqueued payload so the next change to this entity is delivered, not skipped.
    await conn.execute(
        *Q.forget_payload_hash(
            webhook_id=event["webhook_id"], entity_type=event["entity_type"], entity_id=event["entity_id"]
        )
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
    return list(await conn.fetch(*Q.replay_targets(webhook_id=webhook_id, entity_type=entity_type, since=since)))
