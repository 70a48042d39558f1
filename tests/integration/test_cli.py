"""The `hookql` command as a user runs it: a subprocess, its stdout, stderr and exit status."""

import os
import subprocess
import sys

import asyncpg
import pytest

from app.store.apikeys import hash_key

pytestmark = pytest.mark.integration  # every test runs `python -m app.cli` as a subprocess

def hookql(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKQL_") and k != "DATABASE_URL"}
    if database_url:
        env["HOOKQL_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_an_unknown_flag_is_a_one_line_error_and_a_non_zero_exit() -> None:
    result = hookql("serve", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert result.stdout == ""


def test_a_bad_flag_value_is_refused() -> None:
    result = hookql("serve", "--port", "99999")
    assert result.returncode == 2
    assert "not a TCP port" in result.stderr


async def test_apikey_create_prints_the_key_alone_and_stores_only_its_hash(database_url: str) -> None:
    result = hookql("apikey", "create", "--operator", "--name", "ci", database_url=database_url)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and " " not in key
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT key_hash, role, name FROM api_keys")
    finally:
        await conn.close()
    assert [(r["key_hash"], r["role"], r["name"]) for r in rows] == [(hash_key(key), "operator", "ci")]


async def test_apikey_for_an_unknown_seller_fails_and_stores_nothing(database_url: str) -> None:
    result = hookql("apikey", "create", "--seller", "424242", database_url=database_url)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "424242" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
    finally:
        await conn.close()


def test_db_url_prints_the_configured_url() -> None:
    result = hookql("db-url", database_url="postgresql://someone@db.example:5432/market")
    assert (result.returncode, result.stdout) == (0, "postgresql://someone@db.example:5432/market\n")


def test_migrate_is_idempotent(database_url: str) -> None:
    result = hookql("migrate", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr


async def test_migrate_refuses_an_edited_applied_migration_in_one_line(database_url: str) -> None:
    # given a database whose record of 0001 does not match the file (as if the file was edited)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE hookql_migrations SET checksum = repeat('0', 64) WHERE version = 1")
    finally:
        await conn.close()
    result = hookql("migrate", database_url=database_url)
    assert result.returncode == 2
    assert result.stderr.startswith("hookql: error: migration 0001_marketplace.sql was changed")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_migrate_refuses_a_version_it_does_not_have_in_one_line(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO hookql_migrations (version, name, checksum) VALUES (9999, 'future', '')")
    finally:
        await conn.close()
    result = hookql("migrate", database_url=database_url)
    assert result.returncode == 2
    assert "9999_future" in result.stderr and "newer hookql" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_fixtures_load_is_safe_to_rerun(database_url: str) -> None:
    for _ in range(2):
        result = hookql("fixtures", "load", database_url=database_url)
        assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(database_url)
    try:
        sellers = await conn.fetchval("SELECT count(*) FROM sellers")
        invoices = await conn.fetchval("SELECT count(*) FROM invoices")
    finally:
        await conn.close()
    assert sellers >= 3 and invoices >= 60
