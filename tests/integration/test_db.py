"""Migrations: they apply to an empty database once, in order, and produce the committed schema
snapshot; the runner refuses an edited or unknown applied migration.

The schema snapshot is tests/snapshots/schema.txt. After adding a migration, regenerate it with
    HOOKQL_UPDATE_SNAPSHOT=1 python -m pytest tests/integration/test_db.py -k snapshot
and review its diff with the migration."""

import asyncio
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from app.store import db
from app.store.catalog import describe_schema
from tests.support.engine_harness import wait_until

SNAPSHOT = Path(__file__).resolve().parent.parent / "snapshots" / "schema.txt"


@pytest.fixture
async def empty_url(server_url: str) -> AsyncIterator[str]:
    """A database of its own with nothing in it, not even the migrations."""
    name = f"hookql_t_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield db.with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_conn(empty_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await db.connect(empty_url)
    yield conn
    await conn.close()


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_migrations_apply_to_an_empty_database_and_are_idempotent(empty_conn: asyncpg.Connection) -> None:
    first = await db.migrate(empty_conn)
    second = await db.migrate(empty_conn)
    tables = {
        r["tablename"] for r in await empty_conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert first == [m.version for m in db.migrations()]
    assert second == []
    spec_tables = {
        "sellers",
        "products",
        "variants",
        "orders",
        "invoices",
        "invoice_line_items",
        "shipments",
        "shipment_items",
        "invoice_amendments",
        "refund_requests",
        "refund_request_line_items",
    }
    assert spec_tables | {"api_keys", "webhooks", "webhook_events", "webhook_attempts", "changes"} <= tables


async def test_the_migrations_produce_the_schema_snapshot(empty_conn: asyncpg.Connection) -> None:
    await db.migrate(empty_conn)
    schema = await describe_schema(empty_conn)
    if os.environ.get("HOOKQL_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(schema)
        pytest.skip(f"wrote {SNAPSHOT}")
    assert schema == SNAPSHOT.read_text(), (
        f"the migrations no longer produce {SNAPSHOT.name}; if the change is intended, regenerate it with "
        "`HOOKQL_UPDATE_SNAPSHOT=1 python -m pytest tests/integration/test_db.py -k snapshot` "
        "and commit it with the migration"
    )


async def test_the_recorded_checksum_is_the_sha256_of_the_file(empty_conn: asyncpg.Connection) -> None:
    await db.migrate(empty_conn)
    recorded = dict(await empty_conn.fetch("SELECT version, checksum FROM hookql_migrations"))
    on_disk = {int(p.name[:4]): hashlib.sha256(p.read_bytes()).hexdigest() for p in db.MIGRATIONS_DIR.glob("*.sql")}
    assert recorded == on_disk


async def test_a_migration_numbered_below_the_latest_applies_to_an_existing_database_with_a_warning(
    empty_conn: asyncpg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a database migrated before 0005 existed (it has 0007 already)
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in db.MIGRATIONS_DIR.glob("*.sql"):
        if not path.name.startswith("0005_"):
            shutil.copy(path, directory)
    before = await db.migrate(empty_conn, directory)
    # when hookql starts with 0005 present
    shutil.copy(next(db.MIGRATIONS_DIR.glob("0005_*.sql")), directory)
    with caplog.at_level(logging.WARNING):
        now = await db.migrate(empty_conn, directory)
    triggers = {
        r["tgname"] for r in await empty_conn.fetch("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%cascade_owner'")
    }
    # then exactly the missing one is applied, and the log names it
    assert 7 in before and 5 not in before
    assert now == [5]
    assert triggers == {"products_capture_cascade_owner", "invoices_capture_cascade_owner"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "0005_capture_cascade_owner.sql" in warnings[0], warnings


async def test_an_edited_applied_migration_is_refused_and_nothing_is_applied(
    empty_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (id int);"})
    assert await db.migrate(empty_conn, directory) == [1]
    write_migrations(directory, {"0001_a.sql": "CREATE TABLE a (id bigint);", "0002_b.sql": "CREATE TABLE b ();"})
    with pytest.raises(db.DatabaseError, match=r"0001_a\.sql was changed .* add a new migration") as refusal:
        await db.migrate(empty_conn, directory)
    assert "\n" not in str(refusal.value)
    assert await empty_conn.fetchval("SELECT to_regclass('b')") is None
    assert await empty_conn.fetchval("SELECT max(version) FROM hookql_migrations") == 1


async def test_an_applied_version_missing_from_disk_is_refused(empty_conn: asyncpg.Connection, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m", {"0001_a.sql": "CREATE TABLE a ();", "0002_b.sql": "CREATE TABLE b ();"}
    )
    await db.migrate(empty_conn, directory)
    (directory / "0002_b.sql").unlink()
    with pytest.raises(db.DatabaseError, match=r"0002_b .* newer hookql"):
        await db.migrate(empty_conn, directory)


async def test_rows_of_the_runner_without_checksums_are_adopted_once(
    empty_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # given a database migrated by the runner that kept no checksum column
    directory = write_migrations(
        tmp_path / "m", {"0001_a.sql": "CREATE TABLE a ();", "0003_c.sql": "CREATE TABLE c ();"}
    )
    await db.migrate(empty_conn, directory)
    await empty_conn.execute("ALTER TABLE hookql_migrations DROP COLUMN checksum")
    # when this runner starts, with one new migration
    write_migrations(directory, {"0004_d.sql": "CREATE TABLE d ();"})
    applied = await db.migrate(empty_conn, directory)
    # then the old rows get the current files' checksums, and the new one is applied
    assert applied == [4]
    recorded = dict(await empty_conn.fetch("SELECT version, checksum FROM hookql_migrations"))
    assert recorded == {m.version: m.checksum for m in db.migrations(directory)}
    # and from then on an edit of an adopted migration is refused
    write_migrations(directory, {"0001_a.sql": "CREATE TABLE a (x int);"})
    with pytest.raises(db.DatabaseError, match=r"0001_a\.sql was changed"):
        await db.migrate(empty_conn, directory)


async def test_concurrent_migrations_apply_each_migration_once(empty_url: str, tmp_path: Path) -> None:
    # CREATE TABLE without IF NOT EXISTS: a migration applied twice fails
    directory = write_migrations(
        tmp_path / "m", {f"{v:04d}_t{v}.sql": f"CREATE TABLE t{v} (id int);" for v in (1, 2, 3)}
    )
    holder, first, second = [await db.connect(empty_url) for _ in range(3)]
    try:
        # given a third session holding the migration lock, so that both runners start at once
        await holder.execute("SELECT pg_advisory_lock($1)", db.MIGRATION_LOCK_KEY)
        runs = [asyncio.create_task(db.migrate(c, directory)) for c in (first, second)]
        waiting = (
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
        )

        async def both_wait() -> bool:
            return bool(await holder.fetchval(waiting) == 2)

        await wait_until(both_wait, timeout_s=10)
        # when the lock is released
        await holder.execute("SELECT pg_advisory_unlock($1)", db.MIGRATION_LOCK_KEY)
        results = await asyncio.gather(*runs)
        count = await holder.fetchval("SELECT count(*) FROM hookql_migrations")
    finally:
        for c in (holder, first, second):
            await c.close()
    # then one runner applied everything and the other found nothing to do
    assert sorted(results) == [[], [1, 2, 3]]
    assert count == 3


async def test_updated_at_is_maintained_by_the_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("INSERT INTO sellers (name) VALUES ('A') RETURNING created_at, updated_at")
        async with conn.transaction():  # now() is the transaction's start: use a later transaction
            later = await conn.fetchval("UPDATE sellers SET name = 'B' RETURNING updated_at")
    assert row["created_at"] == row["updated_at"]
    assert later > row["updated_at"]


async def test_hookql_connections_run_without_jit(database_url: str) -> None:
    # a compiled webhook query would otherwise be JIT-compiled for seconds (db.SERVER_SETTINGS)
    pool = await db.create_pool(database_url)
    try:
        assert await pool.fetchval("SHOW jit") == "off"
    finally:
        await pool.close()
    conn = await db.connect(database_url)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await conn.close()
