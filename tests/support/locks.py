"""Slow statements on demand: a table held locked, and how many statements wait for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def tables_locked(database_url: str, *tables: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold an ACCESS EXCLUSIVE lock on `tables`: any statement touching them waits until the
    block ends, so a request that answers meanwhile ran none, and one that reads them waits in
    pg_stat_activity where a test can see it."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            yield conn
    finally:
        await conn.close()


async def waiting_on_locks(conn: asyncpg.Connection) -> int:
    """Backends of this database waiting for a lock: statements of requests held by tables_locked."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
