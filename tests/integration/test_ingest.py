"""The ingest in one statement (`pending.ingest`, migration 0021's `hookql_ingest`): the fold it
applies in SQL is app.policy.coalesce's, on every short burst, over every pending state; the due
time it writes is `hookql_due_at`'s (migration 0025), pinned here to explicit times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.policy.coalesce import fold
from app.store import pending
from app.store.pending import INGEST_LOCK_KEY
from app.types import Action

DEBOUNCE_MS = 50
MAX_DELAY_MS = 5_000
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _bursts() -> list[tuple[Action | None, tuple[Action, ...]]]:
    """Every pending state (None: nothing pending) with every burst of 1–3 actions."""
    actions = list(Action)
    return [
        (prev, burst)
        for prev in (None, *actions)
        for n in (1, 2, 3)
        for burst in itertools.product(actions, repeat=n)
    ]


async def test_the_sql_fold_is_the_policys_fold_on_every_short_burst(pool: asyncpg.Pool) -> None:
    # given one entity per case: its pending row (if any), then its burst of changes
    cases = _bursts()
    for entity_id, (prev, burst) in enumerate(cases, start=1):
        if prev is not None:
            await pool.execute(
                "INSERT INTO pending_entities (entity_type, entity_id, action, seller_id, first_change_at,"
                " last_change_at, due_at) VALUES ('invoice', $1, $2, 7, $3, $3, $3)",
                entity_id, prev.value, T0,
            )
        for step, action in enumerate(burst, start=1):
            await pool.execute(
                "INSERT INTO changes (entity_type, entity_id, action, seller_id, changed_at)"
                " VALUES ('invoice', $1, $2, $3, $4)",
                entity_id, action.value, 8 if step == len(burst) and step > 1 else None,
                T0 + timedelta(milliseconds=10 * step),
            )
    # when one ingest folds them all
    async with pool.acquire() as conn:
        done = await pending.ingest(conn, 10_000, DEBOUNCE_MS, MAX_DELAY_MS)
    # then every change was taken, and each entity's pending row is what the policy says
    assert done.taken == sum(len(burst) for _, burst in cases)
    assert await pool.fetchval("SELECT count(*) FROM changes") == 0
    rows = {r["entity_id"]: r for r in await pool.fetch("SELECT * FROM pending_entities")}
    for entity_id, (prev, burst) in enumerate(cases, start=1):
        expected = fold(prev, burst)
        row = rows.get(entity_id)
        where = f"pending {prev}, burst {[a.value for a in burst]}"
        if expected is None:
            # a folded-to-nothing entity has no row; a row that was pending is removed
            assert row is None, where
            continue
        assert row is not None and row["action"] == expected.value, where
        first = T0 if prev is not None else T0 + timedelta(milliseconds=10)
        last = T0 + timedelta(milliseconds=10 * len(burst))
        assert row["first_change_at"] == first and row["last_change_at"] == last, where
        # quiet for the debounce after the last change (the max delay is far off)
        assert row["due_at"] == last + timedelta(milliseconds=DEBOUNCE_MS), where
        # the owner the latest change names, else the one pending (else none)
        assert row["seller_id"] == (8 if len(burst) > 1 else 7 if prev is not None else None), where
        assert row["version"] == (2 if prev is not None else 1), where


@pytest.mark.parametrize("timezone", ["UTC", "America/New_York"])
async def test_the_due_time_is_quiet_for_the_debounce_but_no_later_than_the_max_delay(
    pool: asyncpg.Pool, timezone: str
) -> None:
    # given first and last change times, a debounce and a max delay (ms); in any session time
    # zone, here across the hour New York's clocks skip (2026-03-08 07:00 UTC)
    t0 = datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC)

    def ms(n: int) -> datetime:
        return t0 + timedelta(milliseconds=n)

    cases = [
        # (first, last, debounce, max delay) → due
        ((t0, ms(100), 500, 5_000), ms(600)),  # the debounce wins: quiet 500 ms after the last change
        ((t0, ms(4_800), 500, 5_000), ms(5_000)),  # the max delay wins: 5 s after the first change
        ((t0, ms(4_500), 500, 5_000), ms(5_000)),  # both say the same time
        ((t0, t0, 500, 5_000), ms(500)),  # a single change waits exactly the debounce
        ((t0, t0, 0, 0), t0),
        ((t0, ms(1_000), 3_600_000, 7_200_000), ms(3_601_000)),  # an hour is 3,600 s, DST or not
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('TimeZone', $1, true)", timezone)
        for (first, last, debounce_ms, max_delay_ms), expected in cases:
            # when the store's rule computes the due time
            due = await conn.fetchval(
                "SELECT hookql_due_at($1, $2, make_interval(secs => $3), make_interval(secs => $4))",
                first, last, debounce_ms / 1000, max_delay_ms / 1000,
            )
            # then it is the expected one
            assert due == expected, (first, last, debounce_ms, max_delay_ms)


async def test_an_entity_pending_since_long_ago_is_due_by_the_max_delay(pool: asyncpg.Pool) -> None:
    # given an entity pending since T0, and a change to it just before its max delay runs out
    await pool.execute(
        "INSERT INTO pending_entities (entity_type, entity_id, action, first_change_at, last_change_at, due_at)"
        " VALUES ('invoice', 1, 'updated', $1, $1, $1)",
        T0,
    )
    await pool.execute(
        "INSERT INTO changes (entity_type, entity_id, action, changed_at) VALUES ('invoice', 1, 'updated', $1)",
        T0 + timedelta(milliseconds=MAX_DELAY_MS - 10),
    )
    # when it is ingested
    async with pool.acquire() as conn:
        assert (await pending.ingest(conn, 100, DEBOUNCE_MS, MAX_DELAY_MS)).taken == 1
    # then it is due the max delay after its first change, not the debounce after its last
    row = await pool.fetchrow("SELECT first_change_at, due_at FROM pending_entities")
    assert row["first_change_at"] == T0
    assert row["due_at"] == T0 + timedelta(milliseconds=MAX_DELAY_MS)


async def test_it_says_when_the_earliest_entity_it_wrote_comes_due(pool: asyncpg.Pool) -> None:
    # given two entities changed now
    await pool.execute(
        "INSERT INTO changes (entity_type, entity_id, action)"
        " VALUES ('invoice', 1, 'updated'), ('invoice', 2, 'updated')"
    )
    async with pool.acquire() as conn:
        done = await pending.ingest(conn, 100, DEBOUNCE_MS, MAX_DELAY_MS)
    # then the first is due within the debounce from the ingest's start
    assert done.taken == 2
    assert done.next_due_in_s is not None and 0 < done.next_due_in_s <= DEBOUNCE_MS / 1000


async def test_a_burst_that_folds_to_nothing_writes_nothing_and_says_so(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO changes (entity_type, entity_id, action)"
        " VALUES ('invoice', 1, 'created'), ('invoice', 1, 'deleted')"
    )
    async with pool.acquire() as conn:
        done = await pending.ingest(conn, 100, DEBOUNCE_MS, MAX_DELAY_MS)
    assert done == pending.Ingested(2, None)
    assert await pool.fetchval("SELECT count(*) FROM pending_entities") == 0


async def test_it_takes_at_most_the_limit_oldest_first(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO changes (entity_type, entity_id, action)"
        " SELECT 'invoice', g, 'updated' FROM generate_series(1, 5) g"
    )
    async with pool.acquire() as conn:
        done = await pending.ingest(conn, 3, DEBOUNCE_MS, MAX_DELAY_MS)
    assert done.taken == 3
    assert [r[0] for r in await pool.fetch("SELECT entity_id FROM pending_entities ORDER BY 1")] == [1, 2, 3]
    assert [r[0] for r in await pool.fetch("SELECT entity_id FROM changes ORDER BY id")] == [4, 5]


async def test_a_second_ingester_takes_nothing_while_one_holds_the_lock(pool: asyncpg.Pool) -> None:
    # given a change, and another ingester inside its transaction
    await pool.execute("INSERT INTO changes (entity_type, entity_id, action) VALUES ('invoice', 1, 'updated')")
    async with pool.acquire() as other, other.transaction():
        assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", INGEST_LOCK_KEY)
        # when this one ingests
        async with pool.acquire() as conn:
            done = await pending.ingest(conn, 100, DEBOUNCE_MS, MAX_DELAY_MS)
        # then it takes nothing, at once, and the change waits for the lock holder
        assert done == pending.Ingested(0, None)
        assert await pool.fetchval("SELECT count(*) FROM changes") == 1
    async with pool.acquire() as conn:
        assert (await pending.ingest(conn, 100, DEBOUNCE_MS, MAX_DELAY_MS)).taken == 1
