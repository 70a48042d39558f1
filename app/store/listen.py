"""`hookql listen`'s side of the store (`sql/listen.sql`): holding a webhook for a listener,
the listener's claims, the lock a reported answer is recorded under, and the engine's sweep of
lapsed holds. A held webhook is not dispatched over HTTP: `delivery.sql`'s claim and
`enqueue.sql`'s hand-off leave it out; its events reach the listener through `claim_for_listener`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.store.delivery import EVENTS_CHANNEL, ClaimedEvent
from app.store.queries import load

Q = load("listen")


def is_held(webhook: Mapping[str, Any], now: datetime) -> bool:
    """Whether a `webhooks` row is held by `hookql listen` at `now`: delivered by its listener,
    never over HTTP (the test the SQL makes in claims and hand-offs)."""
    until = webhook["listen_until"]
    return bool(webhook["listen_only"]) or (until is not None and until > now)


async def hold_webhook(conn: asyncpg.Connection, webhook_id: int, lease_s: float, *, temporary: bool) -> datetime:
    """Hold the webhook for a listener for `lease_s` seconds from now; `temporary` marks one the
    listener created (deleted when the hold ends). Returns when the hold lapses unless renewed."""
    until: datetime = await conn.fetchval(
        *Q.hold_webhook(webhook_id=webhook_id, lease_s=lease_s, listen_only=temporary)
    )
    return until


async def renew_hold(conn: asyncpg.Connection, webhook_id: int, lease_s: float) -> datetime | None:
    """Extend a hold that has not lapsed to `lease_s` from now; None when it has lapsed (or the
    webhook is gone)."""
    until: datetime | None = await conn.fetchval(*Q.renew_hold(webhook_id=webhook_id, lease_s=lease_s))
    return until


@dataclass(frozen=True)
class Released:
    """What ending a hold did: a temporary webhook is `deleted`, an attached one `released` to
    HTTP delivery."""

    deleted: bool
    released: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Released:
        return cls(bool(row["deleted"]), bool(row["released"]))


async def release_hold(conn: asyncpg.Connection, webhook_id: int) -> Released:
    row = await conn.fetchrow(*Q.release_hold(webhook_id=webhook_id, channel=EVENTS_CHANNEL))
    assert row is not None
    return Released.from_row(row)


@dataclass(frozen=True)
class Swept:
    deleted: int  # temporary webhooks whose listener stopped renewing
    released: int  # attached webhooks back on HTTP delivery
    next_lapse_in_s: float | None  # until the earliest hold left lapses, unless renewed; None: no hold

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Swept:
        return cls(int(row["deleted"]), int(row["released"]), row["next_lapse_in_s"])


async def sweep_lapsed(conn: asyncpg.Connection) -> Swept:
    """End every hold whose listener stopped renewing it."""
    row = await conn.fetchrow(*Q.sweep_lapsed(channel=EVENTS_CHANNEL))
    assert row is not None
    return Swept.from_row(row)


async def claim_for_listener(conn: asyncpg.Connection, webhook_id: int, margin_s: float) -> list[ClaimedEvent]:
    """Lease the held webhook's due events to its listener (each for the webhook's timeout plus
    `margin_s`); none when the webhook is not held, or disabled."""
    return [ClaimedEvent.from_row(r) for r in await conn.fetch(*Q.claim_for_listener(webhook_id=webhook_id,
                                                                                      margin_s=margin_s))]


async def reported_event_webhook(conn: asyncpg.Connection, event_id: int, owner: int | None) -> int | None:
    """The webhook of the event if `owner` (a seller id, or None for the operator) may see it."""
    webhook_id: int | None = await conn.fetchval(*Q.reported_event_webhook(event_id=event_id, owner=owner))
    return webhook_id


async def lock_reported_event(conn: asyncpg.Connection, webhook_id: int, event_id: int) -> ClaimedEvent | None:
    """The event a listener reports on, locked (after its webhook, in the engine's lock order) for
    the rest of the transaction; None unless it is pending, leased and of a held webhook."""
    await conn.execute(*Q.key_share_webhook(webhook_id=webhook_id))
    row = await conn.fetchrow(*Q.lock_reported_event(event_id=event_id))
    return ClaimedEvent.from_row(row) if row is not None else None


async def enqueue_ping(
    conn: asyncpg.Connection, *, public_id: str, webhook_id: int, sequence: int, payload: Any, payload_hash: bytes
) -> int:
    """A pending `ping`, due now, for a held webhook's listener."""
    return int(
        await conn.fetchval(
            *Q.enqueue_ping(
                public_id=public_id, webhook_id=webhook_id, sequence=sequence, payload=payload,
                payload_hash=payload_hash,
            )
        )
    )
