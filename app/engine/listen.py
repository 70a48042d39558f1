"""The engine's side of `hookql listen` (app.api.listen): ending the holds whose listener stopped
renewing them — it died, or lost its connection."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from app.store import listen as listen_store

log = logging.getLogger(__name__)

LAPSE_PAD_S = 0.05  # sweep this long after a hold's lapse, so the database's now() has passed it
MIN_SLEEP_S = 0.01
ERROR_SLEEP_S = 1.0


def next_sweep_in_s(next_lapse_in_s: float | None, lease_s: float) -> float:
    """How long the sweeper sleeps after a sweep: until the earliest hold left lapses, and never
    longer than one lease. A hold made while it sleeps lapses no earlier than one lease after it
    was made, so the sweep at the end of that sleep sees it and wakes again when it lapses: every
    lapsed hold ends within LAPSE_PAD_S of its lapse, and an engine with no hold runs one sweep
    a lease (30 s by default) instead of one a second. Holds are made by processes that share
    HOOKQL_LISTEN_LEASE_S."""
    if next_lapse_in_s is None:
        return lease_s
    return max(MIN_SLEEP_S, min(lease_s, next_lapse_in_s + LAPSE_PAD_S))


async def sweep_loop(pool: asyncpg.Pool, lease_s: float) -> None:
    """End lapsed holds as they lapse (`next_sweep_in_s`): temporary webhooks are deleted,
    attached ones go back to HTTP delivery."""
    while True:
        sleep_s = ERROR_SLEEP_S
        try:
            async with pool.acquire() as conn:
                swept = await listen_store.sweep_lapsed(conn)
            if swept.deleted or swept.released:
                log.info("listen: %d temporary webhooks deleted, %d released to HTTP delivery (listener gone)",
                         swept.deleted, swept.released)
            sleep_s = next_sweep_in_s(swept.next_lapse_in_s, lease_s)
        except Exception as exc:  # housekeeping: the next round does it
            log.warning("listen: sweeping lapsed holds skipped (%s)", exc)
        await asyncio.sleep(sleep_s)
