"""LISTEN connection that turns PostgreSQL notifications into asyncio wake-ups. Notifications
only wake the loops; the tables are the truth, so a lost notification costs a sweep, not data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from app.store import db
from app.store.delivery import EVENTS_CHANNEL
from app.store.pending import CHANGES_CHANNEL

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0
HEALTH_CHECK_S = 5.0  # how often an idle LISTEN connection is checked for life


class Wakeups:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.changes = asyncio.Event()
        self.events = asyncio.Event()
        self.connected = asyncio.Event()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        (self.changes if channel == CHANGES_CHANNEL else self.events).set()

    async def run(self) -> None:
        delay_s = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=10)
                await conn.add_listener(CHANGES_CHANNEL, self._on_notify)
                await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
                # Anything committed while we were not listening is found by a sweep now.
                self.changes.set()
                self.events.set()
                self.connected.set()
                delay_s = 0.1
                while True:
                    await asyncio.sleep(HEALTH_CHECK_S)
                    await db.ping(conn, HEALTH_CHECK_S)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.connected.clear()
                log.warning("lost the LISTEN connection (%s); reconnecting in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(RECONNECT_MAX_S, delay_s * 2)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)


async def wait_any(events: list[asyncio.Event], timeout_s: float) -> list[asyncio.Event]:
    """Sleep until one of `events` is set or `timeout_s` passes; returns those that are set.
    It only waits: clearing a wake-up is the business of the loop that owns it (a stop flag,
    for one, stays set)."""
    if not any(e.is_set() for e in events):
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
    return [e for e in events if e.is_set()]
