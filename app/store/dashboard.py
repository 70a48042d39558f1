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
    id: int
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


@dataclass(frozen=True)
class EventDetail:
    """One event with its webhook, as its own page shows it."""

    id: int
    public_id: str
    event: str
    entity_type: str | None
    entity_id: int | None
    sequence: int
    status: str
    attempts: int
    changed_at: datetime
    created_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None
    error: str | None
    webhook_id: int
    webhook_name: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EventDetail:
        return cls(**row)


@dataclass(frozen=True)
class AttemptDetail:
    """One attempt in full: the request as sent (secrets masked when it was recorded; None for
    an attempt refused before a request was built) and the answer."""

    id: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_headers: dict[str, str]
    response_body: str  # the first 4 KiB
    request_method: str | None
    request_url: str | None
    request_headers: list[tuple[str, str]] | None  # in the order sent
    request_body: bytes | None  # the exact bytes sent

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AttemptDetail:
        headers = row["request_headers"]
        return cls(**{**row, "request_headers": None if headers is None else [(n, v) for n, v in headers]})


@dataclass(frozen=True)
class HourBucket:
    """A webhook's attempts in one hour: answered 2xx (`ok`) or not, and their median duration."""

    hour: datetime
    ok: int
    failed: int
    p50_ms: float | None  # None: no attempt that hour

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> HourBucket:
        return cls(**row)


async def event(conn: asyncpg.Connection, event_id: int, seller_id: int | None) -> EventDetail | None:
    """The event, if `seller_id` (None: the operator) may see its webhook."""
    row = await conn.fetchrow(*Q.event(event_id=event_id, seller_id=seller_id))
    return None if row is None else EventDetail.from_row(row)


async def attempt_details(conn: asyncpg.Connection, event_id: int) -> list[AttemptDetail]:
    """Every attempt of an event the caller has checked the viewer may see, newest first."""
    return [AttemptDetail.from_row(r) for r in await conn.fetch(*Q.attempt_details(event_id=event_id))]


async def attempt_body(conn: asyncpg.Connection, attempt_id: int, seller_id: int | None) -> bytes | None:
    """The exact body the attempt sent, if `seller_id` may see it and it was recorded."""
    body: bytes | None = await conn.fetchval(*Q.attempt_body(attempt_id=attempt_id, seller_id=seller_id))
    return body


async def hourly_deliveries(conn: asyncpg.Connection, webhook_id: int) -> list[HourBucket]:
    """The webhook's last 24 hours, hour by hour, oldest first (24 buckets, empty ones included)."""
    return [HourBucket.from_row(r) for r in await conn.fetch(*Q.hourly_deliveries(webhook_id=webhook_id))]
