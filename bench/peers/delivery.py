"""What a Python peer's job does, the same for pgqueuer and procrastinate: ONE statement builds the
payload and names the URL and secret (payload.sql), the standardwebhooks library signs it, aiohttp
POSTs it. A non-2xx answer raises, so the queue's own retry takes over, as an integrator's would."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from functools import lru_cache

import aiohttp
import asyncpg
from standardwebhooks.webhooks import Webhook

from bench.peers.workload import PAYLOAD_SQL

POST_TIMEOUT_S = 10.0
READY_LINE = "READY"  # printed once the worker takes jobs; bench/peers/systems.py waits for it


class DeliveryFailed(Exception):
    pass


@lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, session: aiohttp.ClientSession) -> None:
        self.pool = pool
        self.session = session

    @classmethod
    async def open(cls, database_url: str, concurrency: int) -> Deliverer:
        pool = await asyncpg.create_pool(database_url, min_size=concurrency, max_size=concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S))
        return cls(pool, session)

    async def close(self) -> None:
        await self.session.close()
        await self.pool.close()

    async def deliver(self, webhook_id: int, invoice_id: int, message_id: str) -> None:
        row = await self.pool.fetchrow(PAYLOAD_SQL, webhook_id, invoice_id)
        if row is None:
            return  # the invoice or the subscription is gone: nothing to send
        text: str = row["body"]
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": _signer(row["secret"]).sign(message_id, now, text),
        }
        async with self.session.post(row["url"], data=text.encode(), headers=headers) as resp:
            await resp.read()
            if resp.status >= 300:
                raise DeliveryFailed(f"{row['url']} answered {resp.status}")


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT (the bench stopping the worker) set `stop`."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def announce_ready() -> None:
    print(f"{READY_LINE} {os.getpid()}", flush=True)
