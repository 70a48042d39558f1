"""The engine's side of `hookql listen` (app.api.listen): ending the holds whose listener stopped
renewing them — it died, or lost its connection."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from app.store import listen as listen_store

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0  # lapsed holds end within HOOKQL_LISTEN_LEASE_S + this


async def sweep_loop(pool: asyncpg.Pool) -> None:
    """End lapsed holds, every SWEEP_INTERVAL_S: temporary webhooks are deleted, attached ones go
    back to HTTP delivery."""
    while True:
        try:
            async with pool.acquire() as conn:
                swept = await listen_store.sweep_lapsed(conn)
            if swept.deleted or swept.released:
                log.info("listen: %d temporary webhooks deleted, %d released to HTTP delivery (listener gone)",
                         swept.deleted, swept.released)
        except Exception as exc:  # housekeeping: the next round does it
            log.warning("listen: sweeping lapsed holds skipped (%s)", exc)
        await asyncio.sleep(SWEEP_INTERVAL_S)
