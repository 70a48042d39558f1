"""The live feed of webhook events behind the `webhookEvents` subscription.

Events are created and attempted by whichever engine process (serve or worker) gets to them, so
the feed cannot be process memory: migration 0007 announces the id of every event that is
created, changes status or gains an attempt on the `hookql_event_updates` channel, from any
process. Each API process holds ONE listening connection while it has subscribers, re-reads the
announced rows once per batch, and hands every subscriber the events it may see (the operator:
all; a seller: its own webhooks'), optionally of one webhook.

Bounded memory: each subscriber's queue holds at most `QUEUE_LIMIT` updates; a consumer that falls
further behind loses the oldest ones (a live view wants the latest state, not a complete log — the
event log in the API is the complete one). Notifications sent while the listening connection is
down are not replayed, for the same reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.store.queries import load
from app.types import Visibility

log = logging.getLogger(__name__)

Q = load("events_feed")

CHANNEL = "hookql_event_updates"
QUEUE_LIMIT = 1000  # updates per subscriber
RECONNECT_DELAY_S = 1.0

@dataclass(frozen=True)
class AttemptUpdate:
    id: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    response_headers: dict[str, str]
    response_body: str
    error: str | None


@dataclass(frozen=True)
class EventUpdate:
    """An event as it is now, with its latest attempt."""

    id: int
    public_id: str
    webhook_id: int
    owner_seller_id: int | None
    entity_type: str | None
    entity_id: int | None
    event: str
    sequence: int | None  # None: a filtered event, which takes no sequence number
    status: str
    skip_reason: str | None
    payload: Any
    attempts: int
    changed_at: datetime
    created_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None
    latest_attempt: AttemptUpdate | None

    @property
    def signature(self) -> tuple[str, int, int | None]:
        """What a watcher can see change; the same signature twice is one update."""
        return self.status, self.attempts, self.latest_attempt.id if self.latest_attempt else None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EventUpdate:
        attempt = None
        if row["attempt_id"] is not None:
            attempt = AttemptUpdate(
                id=row["attempt_id"],
                attempted_at=row["attempted_at"],
                duration_ms=row["duration_ms"],
                status_code=row["status_code"],
                response_headers=row["response_headers"] or {},
                response_body=row["response_body"],
                error=row["error"],
            )
        return cls(
            id=row["id"],
            public_id=row["public_id"],
            webhook_id=row["webhook_id"],
            owner_seller_id=row["seller_id"],
            entity_type=row["entity_type"],
            entity_id=row["entity_id"],
            event=row["event"],
            sequence=row["sequence"],
            status=row["status"],
            skip_reason=row["skip_reason"],
            payload=row["payload"],
            attempts=row["attempts"],
            changed_at=row["changed_at"],
            created_at=row["created_at"],
            next_attempt_at=row["next_attempt_at"],
            finished_at=row["finished_at"],
            latest_attempt=attempt,
        )


class _Subscriber:
    def __init__(self, visibility: Visibility, webhook_id: int | None) -> None:
        self.visibility = visibility
        self.webhook_id = webhook_id
        self.queue: asyncio.Queue[EventUpdate] = asyncio.Queue(QUEUE_LIMIT)

    def wants(self, update: EventUpdate) -> bool:
        if self.webhook_id is not None and update.webhook_id != self.webhook_id:
            return False
        return self.visibility.may_see(update.owner_seller_id)

    def offer(self, update: EventUpdate) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: see the module docstring
        self.queue.put_nowait(update)


class EventFeed:
    """One process's listener on the event channel, shared by all its subscribers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._subscribers: set[_Subscriber] = set()
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._lock = asyncio.Lock()  # serialises starting and stopping the listener
        self._announced: set[int] = set()
        self._fetching: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, visibility: Visibility, webhook_id: int | None = None
    ) -> AsyncIterator[asyncio.Queue[EventUpdate]]:
        """A queue of the updates `visibility` may see (of one webhook, or all), from now on.
        Listening has started when this returns."""
        subscriber = _Subscriber(visibility, webhook_id)
        async with self._lock:
            if self._conn is None:
                await self._listen()
            self._subscribers.add(subscriber)
        try:
            yield subscriber.queue
        finally:
            async with self._lock:
                self._subscribers.discard(subscriber)
                if not self._subscribers:
                    await self._unlisten()
                    if _feeds.get(id(self._pool)) is self:
                        del _feeds[id(self._pool)]

    async def _listen(self) -> None:
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._conn = conn

    async def _unlisten(self) -> None:
        conn, self._conn = self._conn, None
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            self._reconnecting = None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a dead connection cannot unlisten; release it anyway
            conn.remove_termination_listener(self._on_terminated)
            await conn.remove_listener(CHANNEL, self._on_notify)
        await self._pool.release(conn)

    def _on_terminated(self, conn: object) -> None:
        log.warning("event feed: listening connection lost; reconnecting")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_DELAY_S)
            async with self._lock:
                if not self._subscribers:
                    return
                dead, self._conn = self._conn, None
                if dead is not None:
                    with contextlib.suppress(Exception):
                        await self._pool.release(dead)
                try:
                    await self._listen()
                    return
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("event feed: cannot listen yet: %s", exc)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self._announced.update(int(part) for part in payload.split(",") if part.isdigit())
        # Notifications arriving while a fetch runs are read by the next one: one query per batch.
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        while self._announced and self._subscribers:
            ids, self._announced = sorted(self._announced), set()
            try:
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(*Q.event_updates(event_ids=ids))
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event feed: cannot read %d announced events: %s", len(ids), exc)
                return
            for row in rows:
                update = EventUpdate.from_row(row)
                for subscriber in list(self._subscribers):
                    if subscriber.wants(update):
                        subscriber.offer(update)


# Feeds by id(pool) (asyncpg pools take no weak references); a feed leaves when its last
# subscriber does, so closed pools are not kept alive.
_feeds: dict[int, EventFeed] = {}


def feed_for(pool: asyncpg.Pool) -> EventFeed:
    """The process's feed for this database (created on first use)."""
    feed = _feeds.get(id(pool))
    if feed is None:
        feed = _feeds[id(pool)] = EventFeed(pool)
    return feed


async def watch(
    pool: asyncpg.Pool, visibility: Visibility, webhook_id: int | None = None
) -> AsyncIterator[EventUpdate]:
    """Yield each update `visibility` may see, skipping repeats of an unchanged state."""
    last_seen: dict[int, tuple[str, int, int | None]] = {}
    async with feed_for(pool).subscribe(visibility, webhook_id) as queue:
        while True:
            update = await queue.get()
            if last_seen.get(update.id) == update.signature:
                continue
            if len(last_seen) >= QUEUE_LIMIT:
                last_seen.pop(next(iter(last_seen)))  # oldest first: dicts keep insertion order
            last_seen[update.id] = update.signature
            yield update
