"""Migrations apply to an empty database, once; the embedded server explains an unusable data dir."""

from pathlib import Path

import asyncpg
import pytest

from app import db


async def test_migrations_apply_to_an_empty_database_and_are_idempotent(server_url: str) -> None:
    name = "hookql_t_empty_migrate"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await db.connect(db.with_database(server_url, name))
        try:
            first = await db.migrate(conn)
            second = await db.migrate(conn)
            tables = {
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
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



async def test_a_migration_numbered_below_the_latest_applies_to_an_existing_database(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a database migrated before 0005 existed (it has 0007 already)
    name = "hookql_t_late_migrate"
    every = db.migrations()
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await db.connect(db.with_database(server_url, name))
        try:
            monkeypatch.setattr(db, "migrations", lambda: [m for m in every if m.version != 5])
            before = await db.migrate(conn)
            # when hookql starts with 0005 present
            monkeypatch.setattr(db, "migrations", lambda: every)
            now = await db.migrate(conn)
            triggers = {
                r["tgname"]
                for r in await conn.fetch("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%cascade_owner'")
            }
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    # then exactly the missing one is applied
    assert 7 in before and 5 not in before
    assert now == [5]
    assert triggers == {"products_capture_cascade_owner", "invoices_capture_cascade_owner"}

async def test_updated_at_is_maintained_by_the_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("INSERT INTO sellers (name) VALUES ('A') RETURNING created_at, updated_at")
        async with conn.transaction():  # now() is the transaction's start: use a later transaction
            later = await conn.fetchval("UPDATE sellers SET name = 'B' RETURNING updated_at")
    assert row["created_at"] == row["updated_at"]
    assert later > row["updated_at"]


def test_an_unusable_data_dir_gets_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        pytest.raises(db.DatabaseError, match=r"data directory .* is unusable"),
        db.embedded_server(blocker / "x"),
    ):
        pass


def test_urls_are_redacted_and_retargeted() -> None:
    assert db.redact("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert db.with_database("postgresql://u@h:5432/postgres", "other") == "postgresql://u@h:5432/other"
    assert (
        db.with_database("postgresql://postgres:@/postgres?host=/tmp/s", "x")
        == "postgresql://postgres:@/x?host=/tmp/s"
    )
