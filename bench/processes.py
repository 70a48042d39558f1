"""`hookql serve` / `hookql worker` as real subprocesses on a bench database, the way an operator
runs them: settings through HOOKQL_* variables, stopped with SIGTERM. `serve` is two processes,
the API and its engine child (app.engine.supervisor): memory and CPU figures count both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

START_TIMEOUT_S = 30.0  # imports + migrations check + webhook loading on a loaded 2-core machine
STOP_TIMEOUT_S = 20.0  # above hookql's drain bound (shutdown_timeout_s, 10 s) plus its grace
READY_POLL_S = 0.1
LOG_TAIL_CHARS = 300
# `hookql` as installed with this interpreter (the console script may not be on PATH).
HOOKQL_COMMAND = (sys.executable, "-m", "app.cli")


@dataclass(frozen=True)
class EngineSettings:
    debounce_ms: int = 50
    max_delay_ms: int = 5_000
    retry_base_ms: int = 30_000

    def env(self) -> dict[str, str]:
        return {
            "HOOKQL_DEBOUNCE_MS": str(self.debounce_ms),
            "HOOKQL_MAX_DELAY_MS": str(self.max_delay_ms),
            "HOOKQL_RETRY_BASE_MS": str(self.retry_base_ms),
            "HOOKQL_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on 127.0.0.1
            "HOOKQL_LOG_LEVEL": "warning",
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EngineProcess:
    def __init__(self, command: str, database_url: str, settings: EngineSettings, log_dir: Path, name: str) -> None:
        assert command in ("serve", "worker")
        self.command = command
        self.database_url = database_url
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.port = free_port() if command == "serve" else 0
        self.process: asyncio.subprocess.Process | None = None
        self.stopped = False

    async def start(self) -> None:
        env = {
            **os.environ,
            **self.settings.env(),
            "HOOKQL_DATABASE_URL": self.database_url,
            # Never the developer's ./.hookql, even if a setting went missing.
            "HOOKQL_DATA_DIR": str(self.log_path.parent / "data"),
        }
        if self.command == "serve":
            env["HOOKQL_PORT"] = str(self.port)
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *HOOKQL_COMMAND,
                self.command,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"`hookql {self.command}` exited with {self.process.returncode}: {self.log_tail()}"
                    )
                if self.command == "serve":
                    # The API answers first; the engine child says when it runs.
                    if b"engine running" in self.log_path.read_bytes():
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                                if resp.status == 200:
                                    return
                elif b"worker running" in self.log_path.read_bytes():
                    return
                await asyncio.sleep(READY_POLL_S)
        raise RuntimeError(f"`hookql {self.command}` not ready after {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        """The last line of the log (a traceback's last line names the error) and where the rest is."""
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        last = lines[-1].strip()[:LOG_TAIL_CHARS] if lines else "(empty log)"
        return f"{last} (log: {self.log_path})"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The process and its descendants (serve's engine child), as they are now."""
        try:
            return [self.pid, *(c.pid for c in psutil.Process(self.pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        return total

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (graceful), then SIGKILL after `timeout_s`; returns the exit status. Any process
        it started (an engine child) that outlives it is killed too."""
        if self.process is None:
            return None
        if self.stopped:
            return self.process.returncode
        self.stopped = True
        # Asked before it goes: a killed serve's engine child would be left to init. (It stays in
        # the bench's process group, so a harness that kills the whole bench ends it too.)
        children = []
        for pid in self.pids()[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                children.append(psutil.Process(pid))
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running():  # the same process (psutil compares its start time)
                    child.kill()
        return self.process.returncode


@contextlib.asynccontextmanager
async def engines(
    commands: list[str], database_url: str, settings: EngineSettings, log_dir: Path, label: str
) -> AsyncIterator[list[EngineProcess]]:
    """Start the given processes (e.g. ["serve", "worker"]) on one database; stop them all after."""
    started: list[EngineProcess] = []
    try:
        for i, command in enumerate(commands):
            proc = EngineProcess(command, database_url, settings, log_dir, f"{label}-{i}-{command}")
            started.append(proc)
            await proc.start()
        yield started
    finally:
        for proc in started:
            await proc.stop()
