"""The delivery dashboard's reads (`app/store/sql/dashboard.sql`), as typed rows: each read is
filtered by the viewer's seller (None: the operator), so another seller's webhook or event is
indistinguishable from a missing one. The dashboard's changes go through `app.store.webhooks`,
as the GraphQL mutations do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.store.queries import load

Q = load("dashboard")


@dataclass(frozen=True)
class WebhookHealth:
    """A webhook as the dashboard lists it, with its backlog, last attempt and 24 h success."""

    id: int
    seller_id: int | None
    seller_name: str | None  # None for the operator's webhooks
    name: str
    url: str
    entity_type: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    backlog: int  # pending events
    last_status_code: int | None  # None: no attempt yet, or the last one got no answer
    last_error: str | None
    last_attempt_at: datetime | None
    last_event_status: str | None
    attempts_24h: int
    ok_24h: int  # of those, answered 2xx

    @property
    def success_rate_24h(self) -> float | None:
        """The share of the last 24 h's attempts answered 2xx; None without attempts."""
        return None if not self.attempts_24h else self.ok_24h / self.attempts_24h

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WebhookHealth:
        return cls(**row)


@dataclass(frozen=True)
class AttemptSummary:
    event_id: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None  # None: no HTTP answer (see `error`)
    response_body: str  # the first 4 KiB
    error: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AttemptSummary:
        return cls(**row)


@dataclass(frozen=True)
class EventSummary:
    """An event with its newest attempts (`attempt_list`, newest first)."""

    id: int
    public_id: str
    event: str
    entity_type: str | None
    entity_id: int | None
    sequence: int | None  # None: a filtered event, which takes no sequence number
    status: str
    skip_reason: str | None  # why a skipped event was not sent: 'identical' or 'filtered'
    attempts: int
    changed_at: datetime
    created_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None
    error: str | None  # why it was never sent (an evaluation budget breach)
    attempt_list: tuple[AttemptSummary, ...] = ()

    @classmethod
    def from_row(cls, row: asyncpg.Record, attempt_list: tuple[AttemptSummary, ...] = ()) -> EventSummary:
        return cls(**row, attempt_list=attempt_list)


async def webhooks_health(
    conn: asyncpg.Connection, seller_id: int | None, *, webhook_id: int | None = None, limit: int
) -> list[WebhookHealth]:
    """The webhooks `seller_id` may see (all of them for None), or just `webhook_id`, by id."""
    ids = None if webhook_id is None else [webhook_id]
    rows = await conn.fetch(*Q.webhooks_health(seller_id=seller_id, webhook_ids=ids, limit=limit))
    return [WebhookHealth.from_row(r) for r in rows]


async def webhooks_health_of(
    conn: asyncpg.Connection, seller_id: int | None, webhook_ids: list[int]
) -> dict[int, WebhookHealth]:
    """The health of these webhooks, by id, in one statement (GraphQL's DataLoader); a webhook
    `seller_id` may not see (or that does not exist) has no entry."""
    rows = await conn.fetch(*Q.webhooks_health(seller_id=seller_id, webhook_ids=webhook_ids, limit=len(webhook_ids)))
    return {r["id"]: WebhookHealth.from_row(r) for r in rows}


async def recent_events(
    conn: asyncpg.Connection,
    webhook_id: int,
    *,
    status: str | None,
    before_id: int | None,
    limit: int,
    attempts_per_event: int,
) -> list[EventSummary]:
    """A page of one webhook's events, newest first (of `status` only, and below `before_id`,
    when given), each with its newest `attempts_per_event` attempts. The caller has checked that
    the viewer may see the webhook."""
    events = await conn.fetch(*Q.recent_events(webhook_id=webhook_id, status=status, before_id=before_id, limit=limit))
    attempts: dict[int, list[AttemptSummary]] = {}
    if events:
        ids = [e["id"] for e in events]
        for row in await conn.fetch(*Q.newest_attempts(event_ids=ids, per_event=attempts_per_event)):
            attempts.setdefault(row["event_id"], []).append(AttemptSummary.from_row(row))
    return [EventSummary.from_row(e, tuple(attempts.get(e["id"], ()))) for e in events]


async def event_webhook(conn: asyncpg.Connection, event_id: int, seller_id: int | None) -> int | None:
    """The webhook of the event, if `seller_id` may see it; None for a missing or foreign event."""
    webhook_id: int | None = await conn.fetchval(*Q.event_webhook(event_id=event_id, seller_id=seller_id))
    return webhook_id
