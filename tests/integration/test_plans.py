"""hookql's hot statements on plans made while their tables were small (migration 0027).

hookql's connections keep PostgreSQL's default plan caching: after five executions a statement
may run on a generic plan made for the tables as they were then, kept until they are analyzed
again (autovacuum: up to a minute). Each test takes statistics while the tables are small (a
quiet night, a new installation, the bench's freshly cloned database), runs the statement six
times so the session settles on its plan, grows the tables on another connection (autovacuum off
for them), runs the statement again on the plan's connection and counts the rows it read
(pg_stat_xact_user_tables). A lookup that fell back to a scan per row reads the whole table once
per row: millions of rows here (before migration 0027, 9.5-10.2 million to record 500 attempts),
and seconds of locks held on the bench (auto_explain, 2026-12-02). A scan per statement is
allowed: it lasts until the next analyze, and costs milliseconds, not seconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from app.store import delivery, enqueue, pending
from app.types import SendResult
from tests.support.engine_harness import add_webhook

GROWN_EVENTS = 20_000
RECORDED = 500
WEBHOOKS = 10
ENTITIES = 50  # claimed per enqueue, × WEBHOOKS candidates
GROWN_STATES = 500  # (webhook, entity) states per webhook once the table has grown
OWNERS = 200  # sellers with pending entities once the table has grown
PLANNED_AFTER = 6  # executions after which a session runs a statement on its cached plan, if generic


async def rows_read(conn: asyncpg.Connection, table: str) -> int:
    """Rows the current transaction read from `table`, by sequential and index scans (and, as
    PostgreSQL reports them at most once a second, possibly the session's earlier transactions':
    a test after setup on the same connection counts from a reading taken first)."""
    read = await conn.fetchval(
        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables WHERE relname = $1", table
    )
    return int(read)


async def statistics_while_small(pool: asyncpg.Pool, *tables: str) -> None:
    """Statistics taken now, and kept: an analyze while the test runs would invalidate the plans."""
    for table in tables:
        await pool.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    await pool.execute(f"VACUUM ANALYZE {', '.join(tables)}")


async def insert_events(pool: asyncpg.Pool, hook: int, first: int, count: int, status: str) -> list[int]:
    rows = await pool.fetch(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,"
        " payload, payload_hash, changed_at, leased_until) SELECT 'evt_' || i, $1, 'invoice', i, 'invoice.updated', i,"
        " $4, '{}', '\\x00', now(), CASE WHEN $4 = 'pending' THEN now() + interval '1 minute' END"
        " FROM generate_series($2::bigint, $2 + $3 - 1) i RETURNING id",
        hook, first, count, status,
    )
    return [r["id"] for r in rows]


async def record(conn: asyncpg.Connection, hook: int, event_ids: list[int]) -> None:
    now = datetime.now(UTC)
    result = SendResult(started_at=now, duration_ms=1, status_code=200)
    await delivery.record_attempts(
        conn,
        [delivery.attempt_values(e, hook, result) for e in event_ids],
        [delivery.EventOutcome(e, "delivered", now) for e in event_ids],
        [hook],
    )


async def test_recording_reads_each_recorded_event_about_once_on_a_plan_made_while_events_were_few(
    pool: asyncpg.Pool,
) -> None:
    # given a session that has recorded attempts while there were 10 events, as analyzed
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused")
    few = await insert_events(pool, hook, 1, 10, "pending")
    await statistics_while_small(pool, "webhook_events", "webhook_attempts")
    async with pool.acquire() as conn:
        for _ in range(PLANNED_AFTER):
            async with conn.transaction():
                await record(conn, hook, few)
                await conn.execute("UPDATE webhook_events SET status = 'pending', attempts = 0")
        # and events that have grown to 20,000, 500 of them leased to this process
        await insert_events(pool, hook, 100, GROWN_EVENTS, "delivered")
        leased = await insert_events(pool, hook, 100_000, RECORDED, "pending")
        # when their 500 attempts are recorded on that plan
        async with conn.transaction():
            await record(conn, hook, leased)
            read = await rows_read(conn, "webhook_events")
    # then each is recorded, and the events were read a few times at most, not once per attempt
    # (the attempts' foreign-key check on a scan)
    recorded = await pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE id = ANY($1::bigint[]) AND status = 'delivered' AND attempts = 1"
        " AND EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.event_id = webhook_events.id)",
        leased,
    )
    assert recorded == RECORDED
    stored = GROWN_EVENTS + RECORDED + 10
    assert read <= 4 * stored, f"{read:,} event rows read to record {RECORDED} attempts ({stored:,} stored)"


async def test_the_last_hashes_are_read_about_once_per_candidate_on_a_plan_made_while_they_were_few(
    pool: asyncpg.Pool,
) -> None:
    # given a session that has prepared enqueues while 10 webhooks had one (webhook, entity) state
    # each, as analyzed
    hooks = [(await add_webhook(pool, "http://127.0.0.1:9/unused"))[0] for _ in range(WEBHOOKS)]
    states = "INSERT INTO webhook_entity_state (webhook_id, entity_type, entity_id, last_payload_hash)" \
        " SELECT w, 'invoice', i, '\\x01' FROM unnest($1::bigint[]) w, generate_series($2::bigint, $3) i"
    await pool.execute(states, hooks, 1, 1)
    claims = "INSERT INTO pending_entities (entity_type, entity_id, action, first_change_at, last_change_at," \
        " due_at, version, claimed_until) SELECT 'invoice', i, 'updated', now(), now(), now(), 1," \
        " now() + interval '1 minute' FROM generate_series(1, $1) i ON CONFLICT DO NOTHING"
    await pool.execute(claims, 1)
    await statistics_while_small(pool, "webhook_entity_state", "webhook_events", "pending_entities")

    def batch(n: int) -> tuple[list[enqueue.ClaimedVersion], list[enqueue.Candidate]]:
        ids = range(1, n + 1)
        claimed = [enqueue.ClaimedVersion("invoice", i, 1, "updated") for i in ids]
        candidates = [enqueue.Candidate(w, "invoice", i, "payload", b"\x02", True) for w in hooks for i in ids]
        return claimed, candidates

    async with pool.acquire() as conn:
        for _ in range(PLANNED_AFTER):
            planned = conn.transaction()
            await planned.start()
            await enqueue.prepare_enqueue(conn, batch(1)[0], hooks, batch(1)[1])
            await planned.rollback()  # the plan stays cached; the reservation does not
        # and states grown to 500 per webhook (5,000), and 50 entities claimed
        await pool.execute(states, hooks, 2, GROWN_STATES)
        await pool.execute(claims, ENTITIES)
        claimed, candidates = batch(ENTITIES)
        # when an enqueue of a payload for each (webhook, entity) is prepared on that plan
        async with conn.transaction():
            prepared = await enqueue.prepare_enqueue(conn, claimed, hooks, candidates)
            read = await rows_read(conn, "webhook_entity_state")
    # then every candidate's last hash was found, reading the states about once per candidate
    # (a scan per candidate: 2.5 million rows)
    assert len(prepared.previous_hashes) == len(candidates)
    assert read <= 3 * len(candidates), f"{read:,} state rows read for {len(candidates):,} candidates"


async def test_an_attempt_for_an_event_deleted_meanwhile_is_not_recorded(pool: asyncpg.Pool) -> None:
    # given an event in flight, deleted meanwhile (attempts have no foreign key to their event)
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused")
    kept, gone = await insert_events(pool, hook, 1, 2, "pending")
    await pool.execute("DELETE FROM webhook_events WHERE id = $1", gone)
    # when both attempts are recorded
    async with pool.acquire() as conn:
        await record(conn, hook, [kept, gone])
    # then only the existing event's attempt is
    assert [r["event_id"] for r in await pool.fetch("SELECT event_id FROM webhook_attempts")] == [kept]


async def test_deleting_events_takes_their_attempts_along(pool: asyncpg.Pool) -> None:
    # given two webhooks' recorded attempts
    one, _ = await add_webhook(pool, "http://127.0.0.1:9/unused")
    two, _ = await add_webhook(pool, "http://127.0.0.1:9/unused")
    ones = await insert_events(pool, one, 1, 3, "pending")
    twos = await insert_events(pool, two, 10, 3, "pending")
    async with pool.acquire() as conn:
        await record(conn, one, ones)
        await record(conn, two, twos)
    # when one event is deleted, then a webhook (its events go with it)
    await pool.execute("DELETE FROM webhook_events WHERE id = $1", ones[0])
    await pool.execute("DELETE FROM webhooks WHERE id = $1", two)
    # then exactly the attempts of the events left remain
    left = await pool.fetch("SELECT event_id FROM webhook_attempts ORDER BY event_id")
    assert [r["event_id"] for r in left] == ones[1:]


@pytest.mark.parametrize("stored", [(1, 2), (2, 1)], ids=["stored in id order", "stored in reverse"])
async def test_a_claim_locks_events_in_id_order_whatever_its_plan(pool: asyncpg.Pool, stored: tuple[int, int]) -> None:
    # given two due events, stored in either order (a row's place in the table is not its id:
    # updated rows move), and an enqueue that has locked the first by id, as its supersede locks
    # events (in id order), and is about to lock the second
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused")
    for event_id in stored:
        await pool.execute(
            "INSERT INTO webhook_events (id, public_id, webhook_id, entity_type, entity_id, event, sequence, payload,"
            " payload_hash, changed_at) VALUES ($1::bigint, 'evt_' || $1, $2, 'invoice', $1, 'invoice.updated', $1,"
            " '{}', '\\x00', now())",
            event_id, hook,
        )
    async with pool.acquire() as enqueueing, pool.acquire() as claiming:
        supersede = enqueueing.transaction()
        await supersede.start()
        await enqueueing.execute("SELECT 1 FROM webhook_events WHERE id = 1 FOR NO KEY UPDATE")
        # when a claim runs on a plan that reads the events by scanning the table (whose join may
        # then hand them to the update in stored order, or in reverse)
        await claiming.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        claim = asyncio.create_task(delivery.claim_events(claiming, 10, 20.0, 100, [], 25, 100))
        await asyncio.sleep(0.3)  # the claim waits for event 1, holding nothing (or holding event 2)
        # then the enqueue takes the second event without a deadlock, and the claim, once the
        # enqueue commits, leases both
        await enqueueing.execute("SET LOCAL lock_timeout = '3s'")
        await enqueueing.execute("SELECT 1 FROM webhook_events WHERE id = 2 FOR NO KEY UPDATE")
        await supersede.commit()
        claimed = await asyncio.wait_for(claim, 5)
        await claiming.execute("RESET ALL")
    assert sorted(row.id for row in claimed) == [1, 2]


async def test_a_claim_reads_the_due_events_a_few_times_on_a_plan_made_while_they_were_few(pool: asyncpg.Pool) -> None:
    # given a session that has claimed while one event was due among 1,000 delivered, as analyzed
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused", concurrency=100, live_concurrency=100)
    few = "UPDATE webhook_events SET leased_until = NULL"
    await insert_events(pool, hook, 1, 1_000, "delivered")
    await insert_events(pool, hook, 1_000_000, 1, "pending")
    await pool.execute(few)
    await statistics_while_small(pool, "webhook_events", "webhooks")
    async with pool.acquire() as conn:
        for _ in range(PLANNED_AFTER):
            async with conn.transaction():
                assert len(await delivery.claim_events(conn, 200, 20.0, 5000, [], 25, 1024)) == 1
                await conn.execute(few)
        # and 20,000 events due now
        await insert_events(pool, hook, 2_000, GROWN_EVENTS, "pending")
        await pool.execute(few)
        # when it claims 200 of them on that plan
        async with conn.transaction():
            claimed = await delivery.claim_events(conn, 200, 20.0, 5000, [], 25, 1024)
            read = await rows_read(conn, "webhook_events")
    # then it leased 200, reading the due events a few times at most, not once per event leased
    # (the claim joined to its locked events, 760e56c, ran that way on the peers bench: 1.0-5.5 s
    # a claim; this setup does not make PostgreSQL choose that plan, so the guard is the claim's
    # shape: each array computed once, and its own plan made at each execution)
    assert len(claimed) == 200
    stored = GROWN_EVENTS + 1_001
    assert read <= 5 * stored, f"{read:,} event rows read to claim 200 ({stored:,} stored)"


async def test_an_evaluators_claim_reads_the_pending_entities_a_few_times_on_a_plan_made_while_they_were_few(
    pool: asyncpg.Pool,
) -> None:
    # given a session that has claimed while one entity was pending, as analyzed
    few = "UPDATE pending_entities SET claimed_until = NULL"
    grow = (
        "INSERT INTO pending_entities (entity_type, entity_id, action, seller_id, first_change_at, last_change_at,"
        " due_at) SELECT 'invoice', g, 'updated', g % $3 + 1, now(), now(), now() - interval '1 s'"
        " FROM generate_series($1::bigint, $1 + $2 - 1) g"
    )
    await pool.execute(grow, 1, 1, 1)
    await statistics_while_small(pool, "pending_entities")
    async with pool.acquire() as conn:
        for _ in range(PLANNED_AFTER):
            assert len((await pending.claim_due(conn, 500, 60)).entities) == 1
            await conn.execute(few)
        # and 20,000 entities pending, of 200 sellers (the owners taking turns: one loose-scan
        # step and one lateral scan each)
        await pool.execute(grow, 2, GROWN_EVENTS, OWNERS)
        # when it claims 500 of them on that plan
        async with conn.transaction():
            claim = await pending.claim_due(conn, 500, 60)
            read = await rows_read(conn, "pending_entities")
    # then it claimed 500, the sellers taking turns, reading the pending entities a few times at
    # most — not once per owner
    assert len(claim.entities) == 500
    assert len({r["seller_id"] for r in claim.entities}) == OWNERS
    stored = GROWN_EVENTS + 1
    assert read <= 5 * stored, f"{read:,} pending entity rows read to claim 500 ({stored:,} stored)"


async def leases_analyzed_young(pool: asyncpg.Pool, hook: int) -> None:
    """Statistics taken while the table was young: its 200 events all leased, as a new
    installation's (or the bench's cloned database's) first batches are, handed off as enqueued.
    Then the table grows to GROWN_EVENTS delivered events (no longer leased), unanalyzed."""
    await insert_events(pool, hook, 1, 200, "pending")  # leased for a minute
    await statistics_while_small(pool, "webhook_events", "webhooks")
    await insert_events(pool, hook, 1_000_000, GROWN_EVENTS, "delivered")


async def test_a_claim_reads_the_leased_events_through_their_index_on_statistics_that_count_most_leased(
    pool: asyncpg.Pool,
) -> None:
    # given 200 events held (leased) and 20,000 delivered, on statistics that count every event leased
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused", concurrency=100, live_concurrency=100)
    await leases_analyzed_young(pool, hook)
    # and 50 events due, not leased
    due = await insert_events(pool, hook, 2_000_000, 50, "pending")
    await pool.execute("UPDATE webhook_events SET leased_until = NULL WHERE id = ANY($1::bigint[])", due)
    # when a claim runs
    async with pool.acquire() as conn, conn.transaction():
        before = await rows_read(conn, "webhook_events")
        claimed = await delivery.claim_events(conn, 500, 20.0, 5000, [], 25, 1024)
        read = await rows_read(conn, "webhook_events") - before
    # then it leased the 50 due (the 200 held leave room for 2,300 more), reading the held and the
    # pending events, not the delivered ones: a scan of the table for the leases read all 20,250
    assert sorted(row.id for row in claimed) == sorted(due)
    assert read <= 2_000, f"{read:,} event rows read to claim 50 ({GROWN_EVENTS + 250:,} stored, 200 leased)"


async def test_an_enqueue_hands_off_reading_the_leased_events_through_their_index(pool: asyncpg.Pool) -> None:
    # given 200 events held (leased) and 20,000 delivered, on statistics that count every event leased
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused", concurrency=100, live_concurrency=100)
    await leases_analyzed_young(pool, hook)
    # and entity 1's held event superseded while in flight: its attempt is still under way
    await pool.execute("UPDATE webhook_events SET status = 'superseded' WHERE webhook_id = $1 AND entity_id = 1", hook)
    now = datetime.now(UTC)

    def new(entity_id: int) -> enqueue.NewEvent:
        return enqueue.pending_event(
            public_id=f"evt_new_{entity_id}", webhook_id=hook, entity_type="invoice", entity_id=entity_id,
            event="invoice.updated", sequence=3_000_000 + entity_id, payload="{}", payload_hash=b"\x00",
            changed_at=now, clock=None, leased=True,
        )

    # when an enqueue hands off a new state of entity 1 and of ten entities with nothing in flight
    fresh = list(range(3_000_000, 3_000_010))
    async with pool.acquire() as conn, conn.transaction():
        before = await rows_read(conn, "webhook_events")
        leased = await enqueue.finish_enqueue(
            conn, [new(1), *(new(i) for i in fresh)], 20.0, [], [], [], [], debounce_ms=50, max_delay_ms=5000
        )
        read = await rows_read(conn, "webhook_events") - before
    # then the ten are handed off and entity 1's waits for a claim (one in flight per pair), the
    # leases read through their index: a scan of the table read all 20,200 events
    assert sorted(leased) == sorted(f"evt_new_{i}" for i in fresh)
    assert read <= 2_000, f"{read:,} event rows read to hand off 11 events ({GROWN_EVENTS + 200:,} stored)"
