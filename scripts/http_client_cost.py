"""Client CPU per webhook POST: aiohttp as hookql's transport calls it, beside well-kept
alternatives when installed (aiosonic, httpx) and a hand-written keep-alive HTTP/1.1 client on
asyncio.Protocol with httptools' parser (a measuring stick, not a transport: no TLS, no SSRF check,
no stale-connection handling). Each sends N POSTs of a 600-byte JSON body, CONC at a time, to an
aiohttp receiver in a process of its own; CPU is this process's, per request, on uvloop.

    python scripts/http_client_cost.py [N] [CONC]

One run on the shared 2-core VM (2026-12-03, 5,000 requests, 20 at a time; µs of CPU per request,
then requests/s):

    aiohttp     115.9 / 118.1   7,616 / 8,316
    hand-made    33.7 /  47.6  16,179 / 11,526
    aiosonic    121.3           8,071
    httpx     1,857.6             538
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httptools
import uvloop

BODY = b'{"x":"' + b"a" * 600 + b'"}'
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "hookql/bench",
    "webhook-id": "evt_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,abcdefghijklmnopqrstuvwxyz0123456789abcdefghi=",
    "Idempotency-Key": "evt_1",
    "Webhook-Sequence": "1",
}
RECEIVER = """
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None)
"""


async def drive(one: Callable[[], Awaitable[int]], n: int, conc: int) -> tuple[float, float]:
    for _ in range(200):  # connections opened, code warm
        await one()
    gate = asyncio.Semaphore(conc)

    async def gated() -> int:
        async with gate:
            return await one()

    cpu, wall = time.process_time(), time.perf_counter()
    statuses = await asyncio.gather(*(gated() for _ in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if set(statuses) != {200}:
        raise RuntimeError(f"statuses {set(statuses)}")
    return cpu / n * 1e6, n / wall


async def with_aiohttp(url: str, n: int, conc: int) -> tuple[float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> int:
            async with session.request(
                "POST", url, data=BODY, headers=HEADERS, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                await resp.content.read(4096)
                return resp.status

        return await drive(one, n, conc)


async def with_aiosonic(url: str, n: int, conc: int) -> tuple[float, float]:
    import aiosonic  # type: ignore[import-not-found]

    client = aiosonic.HTTPClient()

    async def one() -> int:
        resp = await client.post(url, data=BODY, headers=HEADERS)
        await resp.content()
        return int(resp.status_code)

    return await drive(one, n, conc)


async def with_httpx(url: str, n: int, conc: int) -> tuple[float, float]:
    import httpx  # type: ignore[import-not-found]

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None)) as client:

        async def one() -> int:
            return int((await client.post(url, content=BODY, headers=HEADERS, timeout=10)).status_code)

        return await drive(one, n, conc)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def with_hand_made(url: str, n: int, conc: int) -> tuple[float, float]:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())

    async def one() -> int:
        conn = idle.pop() if idle else (await loop.create_connection(_Connection, parts.hostname, parts.port))[1]
        conn.waiter = loop.create_future()
        request = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(BODY)}\r\n\r\n"
        async with asyncio.timeout(10):
            conn.transport.write(request.encode() + BODY)
            status = await conn.waiter
        idle.append(conn)
        return status

    return await drive(one, n, conc)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    conc = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/hook"
        clients = {"aiohttp": with_aiohttp, "hand-made": with_hand_made, "aiosonic": with_aiosonic,
                   "httpx": with_httpx}
        for name, client in clients.items():
            try:
                cpu_us, rate = uvloop.run(client(url, n, conc))
            except ImportError:
                print(f"{name:10s} not installed")
                continue
            print(f"{name:10s} {cpu_us:8.1f} µs CPU/request  {rate:8,.0f} requests/s")
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
