"""The bench's PostgreSQL: a dedicated embedded server in a temp dir (never the developer's
./.hookql), or a server named by --database-url on which the bench creates, and afterwards drops,
its own databases. Every scenario gets a fresh database cloned from a template that holds the
migrated schema and the bench's marketplace."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from app.store import db
from bench import dataset

STAT_STATEMENTS = "pg_stat_statements"


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """A throwaway embedded PostgreSQL with pg_stat_statements preloaded.

    `shared_preload_libraries` only takes effect at server start, so the server is started once
    to `ALTER SYSTEM`, stopped, and started again (about a second in all)."""
    import asyncio

    home = Path(tempfile.mkdtemp(prefix="hookql-bench-"))
    try:
        with db.embedded_server(home) as url:

            async def preload() -> None:
                conn = await asyncpg.connect(url)
                try:
                    await conn.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{STAT_STATEMENTS}'")
                finally:
                    await conn.close()

            asyncio.run(preload())
        with db.embedded_server(home) as url:
            yield url
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class BenchDatabases:
    """Databases the bench created on `server_url`; all dropped by `drop_all`."""

    server_url: str
    tag: str = field(default_factory=lambda: f"{os.getpid()}_{uuid.uuid4().hex[:6]}")
    created: list[str] = field(default_factory=list)
    template: str = ""
    stat_statements: bool = False  # pg_stat_statements is loaded and installed in the template


    async def postmaster_pid(self) -> int | None:
        """The server's postmaster, when it runs on this machine (for CPU accounting)."""
        conn = await asyncpg.connect(self.server_url)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            # asked while the backend lives: it exits with the connection
            return psutil.Process(backend).ppid()
        except psutil.Error:  # a remote server: its CPU is not ours to count
            return None
        finally:
            await conn.close()

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def server_version(self) -> str:
        conn = await asyncpg.connect(self.server_url)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def create(self, suffix: str, template: str | None = None) -> str:
        name = f"hookql_bench_{self.tag}_{suffix}"
        clause = f' TEMPLATE "{template}"' if template else ""
        await self._admin(f'CREATE DATABASE "{name}"{clause}')
        self.created.append(name)
        return db.with_database(self.server_url, name)

    async def build_template(self) -> str:
        """Migrated schema + the bench marketplace; clones of it are cheap file copies."""
        url = await self.create("template")
        self.template = self.created[-1]
        conn = await db.connect(url)
        try:
            await db.migrate(conn)
            await dataset.create_marketplace(conn)
            preloaded = str(await conn.fetchval("SHOW shared_preload_libraries"))
            if STAT_STATEMENTS in preloaded:
                try:
                    await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {STAT_STATEMENTS}")
                    self.stat_statements = True
                except asyncpg.PostgresError:
                    self.stat_statements = False  # not a superuser: cost falls back to a query logger
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        return url

    @contextlib.asynccontextmanager
    async def fresh(self, suffix: str) -> AsyncIterator[str]:
        """A clone of the template for one scenario, dropped afterwards."""
        url = await self.create(f"{suffix}_{len(self.created)}", template=self.template)
        name = self.created[-1]
        try:
            yield url
        finally:
            await self.drop(name)

    async def drop(self, name: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    async def drop_all(self) -> None:
        for name in reversed(list(self.created)):
            with contextlib.suppress(Exception):  # best effort: the server may be going away
                await self.drop(name)
