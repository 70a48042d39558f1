"""Test tiers, and real PostgreSQL for every SQL-touching test.

A test's folder is its tier (README, "Two commands"): tests/unit, tests/integration, tests/faults,
tests/browser, tests/bench and tests/hostile; each test gets its folder's marker, so `-m unit` and
`tests/unit` select the same tests. Shared helpers live in tests/support. A test outside the tier
folders, a tier marker that contradicts the folder, and a test in tests/unit that requests a
database or network fixture are collection errors naming the test (and the fixture). A unit test
also runs under a guard that makes any socket connect/bind or subprocess spawn raise, so a test
that reaches for a server from tests/unit fails loudly instead of quietly slowing the tier down.

The server is the one named by HOOKQL_TEST_DATABASE_URL, or an embedded one started for the
session. Migrations run once into a template database (and once more into a template with the
fixtures loaded); each test gets its own database cloned from a template, so tests never see
each other's rows."""

from __future__ import annotations

import asyncio
import inspect
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


TIERS = ("unit", "integration", "faults", "browser", "bench", "hostile")
TESTS_DIR = Path(__file__).resolve().parent
DATABASE_FIXTURES = frozenset(
    {"server_url", "templates", "database_url", "fixture_database_url", "pool", "fixture_pool"}
)
# Fixtures that open sockets (a local aiohttp receiver, a transport's client session aimed at one).
NETWORK_FIXTURES = frozenset({"receiver", "transport"})


def tier_problem(item: pytest.Item) -> str | None:
    """Mark `item` with its folder's tier; say what is wrong when it has no tier folder, carries
    another tier's marker, or requests a server fixture from tests/unit."""
    try:
        folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
    except ValueError:
        return None  # not one of hookql's tests
    if folder not in TIERS:
        return f"{item.nodeid} is in no tier folder: move it under tests/{{{','.join(TIERS)}}}"
    marked = [name for name in TIERS if name != folder and item.get_closest_marker(name) is not None]
    if marked:
        return f"{item.nodeid} sits in tests/{folder} but is marked {', '.join(marked)}: its folder is its tier"
    item.add_marker(folder)
    if folder == "unit":
        servers = set(getattr(item, "fixturenames", ())) & (DATABASE_FIXTURES | NETWORK_FIXTURES)
        if servers:
            # the test's own arguments first, then what they bring in
            own = set(inspect.signature(item.function).parameters) if isinstance(item, pytest.Function) else set()
            named = sorted(servers & own) or sorted(servers)
            through = sorted(servers - set(named))
            return (
                f"{item.nodeid} is a unit test but requests the fixture {', '.join(named)}"
                + (f" (and through it {', '.join(through)})" if through else "")
                + ": unit tests run without a database or a network server; move it to tests/integration"
            )
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[pytest.CollectReport]:
    """Tier problems fail the collection of the module (or class) that holds the test, so the run
    stops before any test starts and the error names the test."""
    report: pytest.CollectReport = yield
    if report.passed:
        problems = [p for node in report.result if isinstance(node, pytest.Item) if (p := tier_problem(node))]
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(problems)
            report.result = []
    return report


class UnitTierViolation(AssertionError):
    """A unit-tier test reached for a socket or a subprocess: move it to tests/integration."""


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
