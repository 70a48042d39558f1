"""Test tiers, and real PostgreSQL for every SQL-touching test.

Every test lands in exactly one tier (README, "Two commands"): `faults`, `browser`, `bench` and
`hostile` by their module's `pytestmark`; `integration` when it uses a database fixture or its
module is marked so (real local HTTP, subprocesses); `unit` otherwise. A unit test runs under a
guard that makes any socket connect/bind or subprocess spawn raise, so a test that reaches for a
server while it sits in the unit tier fails loudly instead of quietly slowing the tier down.

The server is the one named by HOOKQL_TEST_DATABASE_URL, or an embedded one started for the
session. Migrations run once into a template database (and once more into a template with the
fixtures loaded); each test gets its own database cloned from a template, so tests never see
each other's rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from app.store import db

SESSION_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
TEMPLATE = f"hookql_tpl_{SESSION_TAG}"
FIXTURE_TEMPLATE = f"hookql_tplfx_{SESSION_TAG}"


# The tiers of their own, each set by a module's `pytestmark`; `integration` and `unit` are assigned here.
SPECIAL_TIERS = ("faults", "browser", "bench", "hostile")
TIERS = ("unit", "integration", *SPECIAL_TIERS)
DATABASE_FIXTURES = frozenset(
    {"server_url", "templates", "database_url", "fixture_database_url", "pool", "fixture_pool"}
)
# Fixtures that open sockets (a local aiohttp receiver, a transport's client session aimed at one).
NETWORK_FIXTURES = frozenset({"receiver", "transport"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name) is not None]
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_servers = not fixtures.isdisjoint(DATABASE_FIXTURES | NETWORK_FIXTURES)
        if "unit" in tiers and uses_servers:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses a database or network fixture")
        if not tiers:
            tiers = ["integration" if uses_servers else "unit"]
            item.add_marker(tiers[0])
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} sits in more than one tier: {tiers}")


class UnitTierViolation(AssertionError):
    """A unit-tier test reached for a socket or a subprocess: mark it (or its module) `integration`."""


@pytest.fixture(autouse=True)
def _unit_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests touch no database, no network server and no subprocess: connecting or binding a
    socket, and spawning a process, raise for them (socketpair, the event loop's self-pipe, still
    works)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str):  # type: ignore[no-untyped-def]
        def raiser(*args: object, **kwargs: object) -> None:
            raise UnitTierViolation(f"{request.node.nodeid} is in the unit tier but tried to {what}")

        return raiser

    monkeypatch.setattr(socket.socket, "connect", refuse("connect a socket"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect a socket"))
    monkeypatch.setattr(socket.socket, "bind", refuse("bind a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("spawn a subprocess"))


@contextmanager
def private_postgres() -> Iterator[tuple[str, Path]]:
    """An embedded PostgreSQL in a directory of its own, outside pytest's basetemp: pytest deletes
    old basetemp directories when another run starts, which would pull the data directory (and
    the socket) out from under a running server."""
    home = Path(tempfile.mkdtemp(prefix="hookql-test-pg-"))
    try:
        with db.embedded_server(home) as url:
            yield url, home / "pg"
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on the test server."""
    configured = os.environ.get("HOOKQL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with private_postgres() as (url, _):
        yield url


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _build_templates(server_url: str) -> None:
    await _admin(server_url, f'CREATE DATABASE "{TEMPLATE}"')
    conn = await db.connect(db.with_database(server_url, TEMPLATE))
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    await _admin(server_url, f'CREATE DATABASE "{FIXTURE_TEMPLATE}" TEMPLATE "{TEMPLATE}"')
    conn = await db.connect(db.with_database(server_url, FIXTURE_TEMPLATE))
    try:
        from app.store.fixtures import load_fixtures

        await load_fixtures(conn)
        # Loading fixtures is not a change anyone subscribed to: start tests with an empty queue.
        await conn.execute("TRUNCATE changes, pending_entities")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def templates(server_url: str) -> Iterator[tuple[str, str]]:
    asyncio.run(_build_templates(server_url))
    yield TEMPLATE, FIXTURE_TEMPLATE

    async def drop() -> None:
        for name in (FIXTURE_TEMPLATE, TEMPLATE):
            await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(drop())


async def _clone(server_url: str, template: str) -> str:
    name = f"hookql_t_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture
async def database_url(server_url: str, templates: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh, migrated, empty database for this test."""
    name = await _clone(server_url, templates[0])
    yield db.with_database(server_url, name)
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def fixture_database_url(server_url: str, templates: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh database with the sample marketplace from fixtures/ loaded."""
    name = await _clone(server_url, templates[1])
    yield db.with_database(server_url, name)
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database_url, min_size=1, max_size=5)
    yield p
    await p.close()


@pytest.fixture
async def fixture_pool(fixture_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(fixture_database_url, min_size=1, max_size=5)
    yield p
    await p.close()


REPO_ROOT = Path(__file__).resolve().parent.parent
