"""The engine: the LISTEN wake-ups, the listener (changes → events) and the dispatcher
(events → attempts), run as named tasks. If one dies, the engine stops and says why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.config import Settings
from app.dispatcher import Dispatcher
from app.listener import Listener
from app.transport import Transport
from app.wakeups import Wakeups

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT_S = 10.0


class Engine:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        database_url: str,
        settings: Settings,
        schema: Any,
        make_context: Callable[..., Any],
        transport: Transport,
    ) -> None:
        self.transport = transport
        self.wakeups = Wakeups(database_url)
        self.dispatcher = Dispatcher(pool, settings, transport, self.wakeups)
        # Fresh events go straight to this process's dispatcher (app.listener.Handoff).
        self.listener = Listener(pool, settings, schema, make_context, self.wakeups, handoff=self.dispatcher)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loops = {
            "hookql-wakeups": self.wakeups.run(),
            "hookql-listener": self.listener.run(),
            "hookql-dispatcher": self.dispatcher.run(),
            "hookql-recorder": self.dispatcher.record_loop(),
            "hookql-lease-renewer": self.dispatcher.renew_loop(),
            "hookql-pruner": self.dispatcher.prune_loop(),
        }
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]

    async def wait(self) -> None:
        """Returns (raising its error) when a loop stops on its own: a bug, not a shutdown."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"engine loop {task.get_name()} died") from task.exception()
        raise RuntimeError(f"engine loop {next(iter(done)).get_name()} stopped unexpectedly")

    async def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop taking work, finish or give back attempts in flight within `timeout_s`."""
        self.listener.stop()
        await self.dispatcher.stop(timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []


@asynccontextmanager
async def running_engine(*, pool: asyncpg.Pool, database_url: str, settings: Settings, schema: Any,
                         make_context: Callable[..., Any],
                         stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> AsyncIterator[Engine]:
    """A started engine with its own transport, stopped (and the transport closed) on exit."""
    async with Transport() as transport:
        engine = Engine(pool=pool, database_url=database_url, settings=settings, schema=schema,
                        make_context=make_context, transport=transport)
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop(stop_timeout_s)
