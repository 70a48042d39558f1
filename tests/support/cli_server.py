"""A real `hookql serve` subprocess and the client commands (`hookql webhooks …`, `hookql listen`)
run against it as subprocesses, as a user runs them: their stdout, stderr and exit status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from app.store.apikeys import create_key
from tests.support.hostile import REPO_ROOT, ServeProcess, api

CLI_TIMEOUT_S = 60.0
LINE_TIMEOUT_S = 20.0  # a line `hookql listen` prints once something happened


@dataclass
class Served:
    """A running serve, its database and keys: the operator's and two sellers'."""

    serve: ServeProcess
    database_url: str
    operator_key: str
    seller_keys: dict[int, str]

    @property
    def url(self) -> str:
        return self.serve.base_url

    def env(self, key: str | None = None) -> dict[str, str]:
        env = {**os.environ, "HOOKQL_URL": self.url, "HOOKQL_API_KEY": key or self.operator_key}
        env.pop("HOOKQL_DATABASE_URL", None)  # a client command needs no database
        return env

    async def gql(self, query: str, variables: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return await api(session, self.url, key or self.operator_key, query, variables)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def serving(database_url: str, log_path: Path, **settings: str) -> AsyncIterator[Served]:
    """`hookql serve` on `database_url` (private targets disallowed unless `settings` say so)."""
    conn = await asyncpg.connect(database_url)
    try:
        operator = await create_key(conn, seller_id=None, name="operator")
        sellers = {s: await create_key(conn, seller_id=s, name=f"seller {s}") for s in (1, 2)}
    finally:
        await conn.close()
    serve = ServeProcess(database_url, {f"HOOKQL_{k.upper()}": v for k, v in settings.items()}, log_path)
    await asyncio.to_thread(serve.start)
    try:
        yield Served(serve, database_url, operator, sellers)
    finally:
        await asyncio.to_thread(serve.stop)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def hookql(served: Served, *args: str, key: str | None = None, url: str | None = None) -> Result:
    """Run one client command to its end."""
    env = served.env(key)
    if url is not None:
        env["HOOKQL_URL"] = url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *args, env=env, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class ListenProcess:
    """`hookql listen …` running in the background; its stdout read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, served: Served, *args: str, key: str | None = None) -> ListenProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "listen", *args, env=served.env(key), cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line_with(self, text: str, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """The first line (already printed, or the next ones) that contains `text`."""
        for line in self.lines:
            if text in line:
                return line
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"listen ended before printing {text!r}: {self.lines} {err.decode()}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if text in line:
                    return line

    async def secret(self) -> str:
        return (await self.line_with("signing secret is ")).split("signing secret is ")[1].split()[0]

    async def webhook_id(self) -> str:
        return (await self.line_with("Ready!")).split(" webhook ")[1].split()[0]

    async def stop(self, sig: int = signal.SIGINT) -> Result:
        """Send `sig`, then collect what is left of its output and its exit status."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        out, err = await asyncio.wait_for(self.proc.communicate(), CLI_TIMEOUT_S)
        self.lines += out.decode().splitlines()
        assert self.proc.returncode is not None
        return Result(self.proc.returncode, "\n".join(self.lines), err.decode())

    async def kill(self) -> None:
        """Whatever state it is in (a test's clean-up)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
