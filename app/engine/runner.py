"""The engine: the LISTEN wake-ups, the producer (changes → events) and the dispatcher
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
from app.engine import listen
from app.engine.dispatcher import Dispatcher
from app.engine.producer import Producer
from app.engine.wakeups import Wakeups
from app.transport.http import Transport

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
        # Fresh events go straight to this process's dispatcher (app.engine.enqueue.Handoff).
        self.producer = Producer(pool, settings, schema, make_context, self.wakeups, handoff=self.dispatcher)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loops = {
            "hookql-wakeups": self.wakeups.run(),
            "hookql-producer": self.producer.run(),
            "hookql-dispatcher": self.dispatcher.run(),
            "hookql-recorder": self.dispatcher.record_loop(),
            "hookql-lease-renewer": self.dispatcher.renew_loop(),
            "hookql-pruner": self.dispatcher.prune_loop(),
            "hookql-listen-sweeper": listen.sweep_loop(
                self.dispatcher.pool, float(self.dispatcher.settings.listen_lease_s)
            ),
        }
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]

    async def wait(self) -> None:
        """Returns (raising its error) when a loop stops on its own: a bug, not a shutdown."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"engine loop {task.get_name()} died") from task.exception()
        raise RuntimeError(f"engine loop {next(iter(done)).get_name()} stopped unexpectedly")

    async def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S, hurry: asyncio.Event | None = None) -> None:
        """Stop taking work; within `timeout_s`, let the batch being evaluated be enqueued and the
        attempts in flight finish and be recorded; give back the leases of the rest. Setting
        `hurry` (a second signal) cuts the wait for attempts in flight short."""
        self.producer.stop()
        draining = asyncio.create_task(self._drain(timeout_s))
        if hurry is not None:
            hurried = asyncio.create_task(hurry.wait())
            await asyncio.wait({draining, hurried}, return_when=asyncio.FIRST_COMPLETED)
            hurried.cancel()
            if not draining.done():
                log.warning("cutting the drain short: attempts in flight are given back")
                self.dispatcher.cut_short()
        await draining
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _drain(self, timeout_s: float) -> None:
        # The producer ends by itself after its current round; cancelled mid-batch, it would
        # leave its claimed entities to their claim's expiry.
        producer = [t for t in self._tasks if t.get_name() == "hookql-producer"]
        stopping = asyncio.create_task(self.dispatcher.stop(timeout_s))
        if producer:
            await asyncio.wait(producer, timeout=timeout_s)
        await stopping


async def run_until_stopped(*, pool: asyncpg.Pool, database_url: str, settings: Settings, schema: Any,
                            make_context: Callable[..., Any], stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """Run an engine until `stop` is set, then drain it within `settings.shutdown_timeout_s`
    (`hurry` cuts that short). Raises if an engine loop dies first."""
    async with running_engine(pool=pool, database_url=database_url, settings=settings, schema=schema,
                              make_context=make_context, stop_timeout_s=settings.shutdown_timeout_s,
                              hurry=hurry) as engine:
        dead = asyncio.create_task(engine.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({dead, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if dead.done():
            dead.result()  # raises: which loop died, and why
        dead.cancel()


@asynccontextmanager
async def running_engine(*, pool: asyncpg.Pool, database_url: str, settings: Settings, schema: Any,
                         make_context: Callable[..., Any], stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
                         hurry: asyncio.Event | None = None) -> AsyncIterator[Engine]:
    """A started engine with its own transport, stopped (and the transport closed) on exit."""
    async with Transport() as transport:
        engine = Engine(pool=pool, database_url=database_url, settings=settings, schema=schema,
                        make_context=make_context, transport=transport)
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop(stop_timeout_s, hurry)
