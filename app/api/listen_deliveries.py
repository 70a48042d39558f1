"""`hookql listen`'s deliveries: a held webhook's due events leased to its listener and handed
over as the exact signed requests the dispatcher would send (app.store.attempts.outgoing_for,
app.transport.http.signed_request), and the answers the listener reports recorded as attempts
by the dispatcher's own outcome rule (app.store.attempts.plan_outcomes).

The server never connects to the listener's local target: the listener makes the request."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from app.config import Settings
from app.policy.retry import FAILING_DISABLE_AFTER_S
from app.store import delivery
from app.store import listen as listen_store
from app.store.attempts import outgoing_for, plan_outcomes
from app.transport.http import signed_request
from app.types import SendResult

# A listener's lease on an event outlasts the webhook's timeout by this much: the time to report
# the answer. A listener that never reports lets the event be claimed again when it runs out.
REPORT_MARGIN_S = 10.0


@dataclass(frozen=True)
class Delivery:
    """One attempt, for the listener to make: the request exactly as the dispatcher would send it."""

    event_pk: int
    public_id: str
    webhook_id: int
    event: str
    sequence: int
    attempt: int  # 1 for the first try
    method: str
    url: str
    headers: dict[str, str]
    body: str  # UTF-8 text of the body bytes (JSON, XML or a form: always text)
    timeout_s: float


async def claim_deliveries(pool: asyncpg.Pool, settings: Settings, webhook_id: int) -> list[Delivery]:
    """Lease the held webhook's due events to its listener, each as the request to make now."""
    async with pool.acquire() as conn:
        rows = await listen_store.claim_for_listener(conn, webhook_id, REPORT_MARGIN_S)
    now = datetime.now(UTC)
    deliveries = []
    for row in rows:
        out = outgoing_for(row, settings, now)
        body, headers = signed_request(out, now)
        deliveries.append(
            Delivery(
                event_pk=row.id,
                public_id=row.public_id,
                webhook_id=row.webhook_id,
                event=row.event,
                sequence=row.sequence,
                attempt=row.attempts + 1,
                method=out.method.value,
                url=out.url,
                headers=headers,
                body=body.decode(),
                timeout_s=out.timeout_s,
            )
        )
    return deliveries


class NotAwaitingReport(LookupError):
    """The event is not one a listener may report on now (the message says why)."""


async def record_report(
    pool: asyncpg.Pool,
    settings: Settings,
    event_pk: int,
    owner: int | None,
    result: SendResult,
    rand: Callable[[], float] = random.random,
) -> None:
    """Record a listener's answer as the event's attempt, deciding its outcome as the dispatcher
    does (2xx delivers; anything else retries with backoff, or fails after maxAttempts; 410
    disables the webhook). `owner`: the reporting key's seller (None: the operator). Raises
    NotAwaitingReport for an event that is missing, foreign, or not leased to a listener."""
    async with pool.acquire() as conn:
        webhook_id = await listen_store.reported_event_webhook(conn, event_pk, owner)
        if webhook_id is None:
            raise NotAwaitingReport("event not found")
        async with conn.transaction():
            row = await listen_store.lock_reported_event(conn, webhook_id, event_pk)
            if row is None:
                raise NotAwaitingReport(
                    "this event is not awaiting a listener's answer: it was already reported, its lease ran out,"
                    " or its webhook is no longer held by `hookql listen`"
                )
            planned = plan_outcomes([(row, result)], datetime.now(UTC), settings, rand)
            await delivery.record_attempts(conn, planned.attempts, planned.events, [webhook_id])
        # As the dispatcher does: the webhook's health in a transaction of its own, after.
        async with conn.transaction():
            await delivery.record_webhook_health(conn, planned.per_hook, planned.failed_pairs, FAILING_DISABLE_AFTER_S)
