"""How hookql runs its asyncio programs: on uvloop where it is installed (a dependency on Linux
and macOS). asyncpg and aiohttp spend much of their time in the event loop's socket and callback
machinery, which uvloop implements in C; the standard loop is the fallback everywhere else."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
