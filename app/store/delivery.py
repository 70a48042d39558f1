"""Delivery: claiming due events (`claim_events`), renewing and releasing their leases, recording
attempts and webhook health, pruning finished events. The statements are in `sql/delivery.sql`.

Rows the engine reads back are typed here (`from_row`); rows it writes are dataclasses whose
fields the statements name. They are values: nothing mutates one after it is built. Those built
once per entity or event (thousands a batch) are slotted but not frozen, and read a claim's
record by position: a frozen dataclass's `__init__` sets each field through `object.__setattr__`
(4 µs for NewEvent's 14 fields against 0.3 µs on the 2-CPU dev machine, 2026-12-02), and
`cls(**record)` costs 15 µs for ClaimedEvent's 23 columns against 0.7 µs for `cls(*record)`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from app.policy.masking import mask_request
from app.store.queries import load
from app.types import SendResult

Q = load("delivery")

CLAIM_LOCK_KEY = 0x686B716C02  # claims serialize across processes; sending does not
EVENTS_CHANNEL = "hookql_events"  # wakes the dispatchers: an event is left to a claim

# What a delivery attempt needs of its webhook: read with the event by a claim, and by enqueueing
# when it hands fresh events straight to this process's dispatcher (app.store.enqueue).
DELIVERY_WEBHOOK_COLUMNS = (
    "url", "method", "format", "headers", "secret", "previous_secret", "previous_secret_expires_at",
    "timeout_seconds", "max_attempts", "concurrency", "live_concurrency", "failing_since", "seller_id",
    "hmac_key", "hmac_header",
)


async def lock_webhooks(conn: asyncpg.Connection, webhook_ids: list[int]) -> list[int]:
    """Lock webhook rows in id order; returns the ids that exist. Every transaction that updates
    both webhooks and their events (enqueueing, recording outcomes, manual actions) takes these
    first, so they cannot deadlock."""
    if not webhook_ids:
        return []
    return [r["id"] for r in await conn.fetch(*Q.lock_webhooks(webhook_ids=webhook_ids))]


@dataclass(slots=True)  # built per row: see the module docstring
class ClaimedEvent:
    """An event leased to this process (by a claim, or inserted leased by an enqueue and handed
    over), with its webhook's delivery configuration (DELIVERY_WEBHOOK_COLUMNS) as read then.
    `payload` is the stored JSON text; `entity_type` and `entity_id` are None for a ping."""

    id: int
    public_id: str
    webhook_id: int
    entity_type: str | None
    entity_id: int | None
    event: str
    sequence: int
    payload: str
    changed_at: datetime
    attempts: int
    url: str
    method: str
    format: str
    headers: list[dict[str, str]]
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    timeout_seconds: float
    max_attempts: int
    concurrency: int
    live_concurrency: int
    failing_since: datetime | None
    seller_id: int | None
    hmac_key: str | None
    hmac_header: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClaimedEvent:
        """A `claim_events` row: its columns are this class's fields, in order (a test pins it)."""
        return cls(*row)

    def webhook(self) -> dict[str, Any]:
        """The webhook's configuration as an attempt is built from it (app.policy.attempt)."""
        return {
            "url": self.url,
            "method": self.method,
            "format": self.format,
            "headers": self.headers,
            "secret": self.secret,
            "previous_secret": self.previous_secret,
            "previous_secret_expires_at": self.previous_secret_expires_at,
            "timeout_seconds": self.timeout_seconds,
            "hmac_key": self.hmac_key,
            "hmac_header": self.hmac_header,
        }


async def claim_events(
    conn: asyncpg.Connection,
    limit: int,
    lease_s: float,
    scan_limit: int,
    finished: list[int],
    ahead: int,
    owner_max_held: int,
) -> list[ClaimedEvent]:
    """Lease up to `limit` due events, at most `ahead` × live concurrency leased per webhook and
    `owner_max_held` per owner (a seller, or the operator), owners taking turns (app.policy.lanes).
    `finished`: this process's attempts sent and not yet recorded, which hold no slot (they still
    count against their owner's held events: they are held until recorded). Each row
    carries the event and its webhook's DELIVERY_WEBHOOK_COLUMNS. The lock is taken in its own
    statement first, so the claim runs on a snapshot that sees every lease committed before it
    (one statement would not); the same statement asks for the claim's plan to be made afresh
    (`claim_lock` in sql/delivery.sql says why)."""
    async with conn.transaction():
        await conn.execute(*Q.claim_lock(lock_key=CLAIM_LOCK_KEY))
        rows = await conn.fetch(
            *Q.claim_events(
                limit=limit,
                lease_s=lease_s,
                scan_limit=scan_limit,
                finished=finished,
                ahead=ahead,
                owner_max_held=owner_max_held,
            )
        )
    return [ClaimedEvent.from_row(r) for r in rows]


async def renew_leases(conn: asyncpg.Connection, event_ids: list[int], lease_s: float) -> list[int]:
    """Extend the leases of events this process holds; returns those that are no longer its to
    send (cancelled, delivered elsewhere after an expired lease, webhook disabled or deleted)."""
    return [r["id"] for r in await conn.fetch(*Q.renew_leases(event_ids=event_ids, lease_s=lease_s))]


async def next_event_due_in_s(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next unleased pending event of an enabled webhook is due, or None."""
    due = await conn.fetchval(*Q.next_event_due_in_s())
    return None if due is None else float(due)


def attempt_values(event_id: int, webhook_id: int, result: SendResult) -> tuple[object, ...]:
    """A `webhook_attempts` row, in the column order `record_attempts` takes; the request's
    secrets masked (app.policy.masking: masked when written, see migration 0013)."""
    request = mask_request(result.request) if result.request is not None else None
    return (
        event_id,
        webhook_id,
        result.started_at,
        result.duration_ms,
        result.status_code,
        result.response_headers,
        result.response_body,
        result.error,
        request.method if request else None,
        request.url if request else None,
        request.headers if request else None,
        request.body if request else None,
    )


class EventOutcome(NamedTuple):
    """What an attempt leaves its event: `status` (applied only if the event is still pending)
    and when the next attempt is due."""

    event_id: int
    status: str
    next_attempt_at: datetime


async def record_attempts(
    conn: asyncpg.Connection,
    attempts: list[tuple[Any, ...]],
    events: list[EventOutcome],
    webhook_ids: list[int],
) -> None:
    """A batch of attempt results, in one statement (`record_attempts` in sql/delivery.sql: no
    transaction needed around it). `attempts` are `webhook_attempts` rows in column order
    (`attempt_values`); `events` what each attempt leaves its event; `webhook_ids` their webhooks.

    Webhook rows are only KEY SHARE locked here (a webhook delete waits; enqueueing, which locks
    them for update, does not), and event rows are locked in id order, as enqueueing's supersede
    does: recording and enqueueing for the same webhooks never wait for each other's whole
    transaction, and cannot deadlock. Claimers are woken only when these outcomes left events of
    these webhooks claimable (a newer state that waited for the one in flight, or events held
    back by the concurrency the released leases took)."""
    columns: list[list[Any]] = [list(c) for c in zip(*attempts, strict=True)] if attempts else [[]] * 12
    (
        attempt_event_ids,
        hook_ids,
        attempted_ats,
        durations_ms,
        status_codes,
        headers,
        bodies,
        errors,
        methods,
        urls,
        request_headers,
        request_bodies,
    ) = columns
    event_ids, statuses, next_attempt_ats = (
        (list(c) for c in zip(*events, strict=True)) if events else ([], [], [])
    )
    await conn.execute(
        *Q.record_attempts(
            webhook_ids=sorted(webhook_ids),
            attempt_event_ids=attempt_event_ids,
            attempt_webhook_ids=hook_ids,
            attempted_ats=attempted_ats,
            durations_ms=durations_ms,
            status_codes=status_codes,
            response_headers=headers,
            response_bodies=bodies,
            errors=errors,
            request_methods=methods,
            request_urls=urls,
            request_headers=request_headers,
            request_bodies=request_bodies,
            event_ids=event_ids,
            statuses=statuses,
            next_attempt_ats=next_attempt_ats,
            channel=EVENTS_CHANNEL,
        )
    )


@dataclass(slots=True)
class OutcomeCounts:
    """One webhook's outcomes in a batch of attempts, as its health is updated from them."""

    delivered: int = 0
    rate_limited: int = 0  # also counted in `failed`
    failed: int = 0
    gone: int = 0

    def only_delivered(self) -> bool:
        """Every outcome was a delivery: nothing to change for a webhook already healthy and at
        full concurrency."""
        return self.delivered > 0 and not (self.rate_limited or self.failed or self.gone)


class WebhookState(NamedTuple):
    """A webhook after its health was recorded."""

    id: int
    enabled: bool
    live_concurrency: int


def _duration_text(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    if days and not rest:
        return f"{days} day" + ("s" if days > 1 else "")
    return f"{seconds:g} s"


async def record_webhook_health(
    conn: asyncpg.Connection,
    webhooks: Mapping[int, OutcomeCounts],
    failed_pairs: list[tuple[int, str, int]],
    disable_after_s: float,
) -> list[WebhookState]:
    """What a batch of outcomes does to its webhooks (call inside a transaction, after
    `record_attempts` committed). A webhook whose attempts have only failed for `disable_after_s`
    is disabled; one answered 410 Gone is disabled at once. failed_pairs: (webhook, entity) whose
    state never reached the receiver: their skip hash is forgotten, under the webhook lock
    enqueueing reads it with.

    `live_concurrency` follows app.policy.retry.next_concurrency, the rule's one statement, mirrored
    here in SQL; tests/integration/test_concurrency_rule.py pins the two together."""
    await lock_webhooks(conn, sorted(webhooks))
    states: list[WebhookState] = []
    if webhooks:
        counts = list(webhooks.values())
        rows = await conn.fetch(
            *Q.record_webhook_health(
                webhook_ids=list(webhooks),
                delivered=[c.delivered for c in counts],
                rate_limited=[c.rate_limited for c in counts],
                failed=[c.failed for c in counts],
                gone=[c.gone for c in counts],
                disable_after_s=disable_after_s,
                failing_reason=f"every delivery failed for {_duration_text(disable_after_s)}",
            )
        )
        states = [WebhookState(*r) for r in rows]
    if failed_pairs:
        hook_ids, types, ids = (list(c) for c in zip(*failed_pairs, strict=True))
        await conn.execute(*Q.forget_payload_hashes(webhook_ids=hook_ids, types=types, ids=ids))
    return states


async def release_leases(conn: asyncpg.Connection, event_ids: list[int]) -> None:
    if event_ids:
        await conn.execute(*Q.release_leases(event_ids=event_ids))


async def prune(conn: asyncpg.Connection, retention_s: float, limit: int) -> int:
    """Delete up to `limit` finished events past retention: delivered, skipped and superseded
    ones. Failed and cancelled events stay for a person to look at. Returns how many."""
    result = await conn.execute(*Q.prune(retention_s=retention_s, limit=limit))
    return int(result.rsplit(" ", 1)[-1])
