"""How hookql runs its asyncio programs: on uvloop where it is installed (a dependency on Linux
and macOS). asyncpg and aiohttp spend much of their time in the event loop's socket and callback
machinery, which uvloop implements in C; the standard loop is the fallback everywhere else."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("hookql")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # Windows, or an install without it: same program, slower loop
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running loop's implementation, for logs and benchmark reports."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, the GraphQL schema, compiled queries) out of
    the garbage collector's reach. Without this, each full collection walks that whole heap: in
    a serve process under load one ran every ~2 s and stopped the event loop for 40-60 ms, which
    was the p99 of commit→receipt. Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


class StopSignals:
    """SIGTERM and SIGINT as asyncio events: the first signal sets `stop` (drain, then exit 0),
    any later one sets `hurry` (cut the drain short; still a clean exit). Handlers go through
    the event loop, so they run between callbacks, never inside one. Setting `stop` directly
    (a parent gone) asks for the same drain without counting as a signal."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self._received = 0

    def install(self, *, ignore_sigint: bool = False) -> StopSignals:
        """Handle the signals in the running loop. `ignore_sigint`: for a child whose parent
        decides (a terminal's Ctrl-C reaches the whole process group, the parent forwards it)."""
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            if sig == signal.SIGINT and ignore_sigint:
                signal.signal(sig, signal.SIG_IGN)
            else:
                loop.add_signal_handler(sig, self.received, sig)
        return self

    def received(self, sig: int) -> None:
        self._received += 1
        if self._received > 1:
            log.warning("%s again: cutting the drain short", signal.Signals(sig).name)
            self.hurry.set()
        else:
            log.info("%s: draining, then stopping", signal.Signals(sig).name)
            self.stop.set()
