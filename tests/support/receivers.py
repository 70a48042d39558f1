"""Real aiohttp receivers for tests: `Receiver` records every request and answers as told;
`HangingReceiver` never answers until released."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.receiver import Hanging


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`respond(request_number) -> (status, headers, body)`; default 200. `delay_s` slows answers."""

    respond: Callable[[int], tuple[int, dict[str, str], bytes]] = lambda n: (200, {}, b"ok")
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), body))
        n = len(self.received)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status, headers, payload = self.respond(n)
        finally:
            self.in_flight -= 1
        return web.Response(status=status, headers=headers, body=payload)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.received) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"receiver got {len(self.received)} requests, expected {count}")
            await asyncio.sleep(0.01)
        return self.received


class HangingReceiver:
    """Holds every request unanswered until `release()`, then answers each 503 at once: the bench's
    hanging receiver (bench.receiver.Hanging), served in-process on a free port. `in_flight` counts
    the requests held now, `max_in_flight` the most at once. With `cancel_abandoned`, a request
    whose sender gave up (its timeout) stops being held and counted at once (aiohttp's handler
    cancellation); without, it stays held until the release."""

    def __init__(self, *, cancel_abandoned: bool = False) -> None:
        self.url = ""
        self._hanging = Hanging()
        self._cancel_abandoned = cancel_abandoned
        self._runner: web.AppRunner | None = None

    @property
    def in_flight(self) -> int:
        return self._hanging.held

    @property
    def max_in_flight(self) -> int:
        return self._hanging.max_held

    async def start(self) -> HangingReceiver:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._hanging.hold)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=self._cancel_abandoned)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def release(self) -> None:
        self._hanging.released.set()

    async def stop(self) -> None:
        await self.release()
        if self._runner is not None:
            await self._runner.cleanup()
