"""`hookql serve`'s engine child: the API process runs the engine as `hookql worker` in a child
process, restarts it when it dies, and stops it on shutdown; the child stops by itself when the
API process dies, even by SIGKILL.

Why a process: evaluating webhook queries is CPU-bound Python. Sharing the API's event loop,
one large batch would hold /healthz and every GraphQL request for its whole length; in a child,
the operating system shares the CPU and the API answers in milliseconds under any engine load.

The child is `python -m app.cli worker --engine-child PARENT_PID`, configured through `HOOKQL_*`
variables with every setting of the parent and the database URL the parent resolved (the
embedded PostgreSQL's included: the parent owns that server and leaves it only after the child
exited). It watches its parent two ways: Linux's PR_SET_PDEATHSIG turns the parent's death into
a SIGTERM, and on every platform a thread reads the pipe on its stdin, whose end of file means
the parent is gone. Either way the child drains as on SIGTERM and exits."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from app.config import Settings

log = logging.getLogger("hookql")

ENGINE_CHILD_FLAG = "--engine-child"  # hidden `worker` flag: the parent's pid
RESTART_MIN_S = 0.5  # first wait before restarting a dead engine child
RESTART_MAX_S = 30.0  # the wait doubles per death, up to this
STABLE_S = 60.0  # a child that ran this long restarts after the shortest wait again
# Beyond shutdown_timeout_s: the child records what finished, gives back leases, closes its pool.
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STDIN_FD = 0


def child_env(settings: Settings, database_url: str) -> dict[str, str]:
    """The environment of an engine child: the parent's, with every setting spelled out as the
    `HOOKQL_*` variable `Settings.from_env` reads back, and the resolved database URL."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "database_url":
            continue
        key = "HOOKQL_DELIVERY_RETENTION" if f.name == "delivery_retention_s" else "HOOKQL_" + f.name.upper()
        env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    env["HOOKQL_DATABASE_URL"] = database_url
    return env


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class EngineChild:
    """One engine child at a time, for as long as `run` runs."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.process: asyncio.subprocess.Process | None = None

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "worker", ENGINE_CHILD_FLAG, str(os.getpid()),
            env=child_env(self.settings, self.database_url),
            stdin=asyncio.subprocess.PIPE,  # never written: its end of file tells the child we are gone
        )

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event) -> None:
        """Keep an engine child running until `stop` is set; then SIGTERM it (again when `hurry`
        is set, which cuts its drain short) and wait for it, SIGKILL after the drain's bound.

        A child that dies on its own (a crash, an OOM kill, kill -9) is started again after a
        short, growing wait rather than taking `serve` down with it: the engine keeps no state
        outside the database (what it held is claimable again when its leases expire), so a new
        child resumes the deliveries, while exiting would also drop the API and every
        subscription with it for the sake of a part that restarts in a second."""
        loop = asyncio.get_running_loop()
        wait_s = RESTART_MIN_S
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    self.process = await self._spawn()
                except OSError as exc:
                    log.warning("cannot start the engine process (%s); retrying in %.1f s", exc, wait_s)
                else:
                    exited = asyncio.create_task(self.process.wait())
                    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if stop.is_set():
                        await self._stop(exited, hurry)
                        return
                    if loop.time() - started >= STABLE_S:
                        wait_s = RESTART_MIN_S
                    log.warning("the engine process %d died (%s); starting another in %.1f s",
                                self.process.pid, describe_exit(exited.result()), wait_s)
                await asyncio.wait({stopping}, timeout=wait_s)
                wait_s = min(RESTART_MAX_S, wait_s * 2)
        finally:
            stopping.cancel()

    async def _stop(self, exited: asyncio.Task[int], hurry: asyncio.Event) -> None:
        assert self.process is not None
        self._signal(signal.SIGTERM)
        hurried = asyncio.create_task(hurry.wait())
        try:
            bound_s = self.settings.shutdown_timeout_s + STOP_GRACE_S
            await asyncio.wait({exited, hurried}, timeout=bound_s, return_when=asyncio.FIRST_COMPLETED)
            if hurried.done() and not exited.done():
                self._signal(signal.SIGTERM)  # the child's second signal: it cuts its drain short
                await asyncio.wait({exited}, timeout=STOP_GRACE_S)
        finally:
            hurried.cancel()
        if not exited.done():
            log.warning("the engine process %d did not stop in time; killing it", self.process.pid)
            self._signal(signal.SIGKILL)
        code = await exited
        if code != 0:
            log.warning("the engine process %d stopped (%s)", self.process.pid, describe_exit(code))


# -- in the child -------------------------------------------------------------------------------


# Set once the parent is known gone: the end of file on stdin comes as the parent's files are
# closed, a moment before its children are handed to another parent — in that moment getppid()
# still names it (an engine child that drained at once then left serve's embedded PostgreSQL
# running: seen under a loaded test run).
_parent_gone = threading.Event()


def watch_parent(parent_pid: int, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` (from another thread: it must be thread-safe) once the parent is gone,
    however it died. Linux also sends this process SIGTERM then (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # died before we were watching
        _parent_gone.set()
        on_gone()
        return

    def read_to_eof() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader holds its lock
        # and aborts the interpreter's shutdown.
        with contextlib.suppress(OSError):
            while os.read(STDIN_FD, 4096):
                pass
        _parent_gone.set()  # serve never closes the pipe while it lives
        on_gone()

    threading.Thread(target=read_to_eof, name="hookql-parent-watch", daemon=True).start()


def parent_gone(parent_pid: int) -> bool:
    return _parent_gone.is_set() or os.getppid() != parent_pid


def owns_embedded(settings: Settings) -> Path | None:
    """The data dir whose embedded PostgreSQL the parent ran, if `settings.database_url` is it."""
    from app.store import db

    if settings.database_url and db.running_embedded_url(settings.data_dir) == settings.database_url:
        return settings.data_dir
    return None
