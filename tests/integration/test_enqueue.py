"""The enqueue statements (app.store.enqueue) on their own: what `finish_enqueue` leaves of an
entity that changed while it was evaluated ('moved')."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from app.store import enqueue
from tests.support.engine_harness import add_webhook

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DEBOUNCE_MS = 500
MAX_DELAY_MS = 5_000


def ms(n: int) -> datetime:
    return T0 + timedelta(milliseconds=n)


async def test_a_moved_entity_is_released_pending_its_newer_changes_due_by_the_coalesce_rule(
    pool: asyncpg.Pool,
) -> None:
    # given two claimed entities that changed after the state their evaluation read: one created
    # and changed once more soon after, one changing steadily (its last change 6 s after T0)
    await pool.execute(
        "INSERT INTO pending_entities (entity_type, entity_id, action, first_change_at, last_change_at, due_at,"
        " claimed_until) VALUES ('invoice', 1, 'created', $1, $2, $1, now() + interval '1 minute'),"
        " ('invoice', 2, 'updated', $1, $3, $1, now() + interval '1 minute')",
        T0, ms(1_000), ms(6_000),
    )
    # when the enqueue finishes, each first changed after its claimed state (at 200 and 800 ms)
    async with pool.acquire() as conn, conn.transaction():
        leased = await enqueue.finish_enqueue(
            conn, [], 0.0, [], [], [], [("invoice", 1, ms(200)), ("invoice", 2, ms(800))],
            debounce_ms=DEBOUNCE_MS, max_delay_ms=MAX_DELAY_MS,
        )
    # then both stay pending, unclaimed, first changed after their claimed state; the created one
    # is an update now (its creation was just enqueued)
    assert leased == {}
    rows = {r["entity_id"]: r for r in await pool.fetch("SELECT * FROM pending_entities")}
    assert [(r["action"], r["claimed_until"], r["first_change_at"]) for _, r in sorted(rows.items())] == [
        ("updated", None, ms(200)),
        ("updated", None, ms(800)),
    ]
    # and each is due by the coalesce rule: the first 500 ms after its last change (the debounce
    # wins), the second 5 s after its new first change (the max delay wins)
    assert rows[1]["due_at"] == ms(1_500)
    assert rows[2]["due_at"] == ms(5_800)


WEBHOOKS = 20
ENTITIES = 100  # × WEBHOOKS pending events, each superseded by one candidate


async def test_superseding_reads_one_pending_event_per_candidate_whatever_the_statistics_say(
    pool: asyncpg.Pool,
) -> None:
    # given statistics taken while no event was pending (a quiet night: every event delivered):
    # 0022's join then scanned every pending event once per candidate, holding its locks for seconds
    hooks = [(await add_webhook(pool, "http://127.0.0.1:9/unused"))[0] for _ in range(WEBHOOKS)]
    await pool.execute(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,"
        " payload, payload_hash, changed_at) SELECT 'evt_old_' || w || '_' || i, w, 'invoice', i, 'invoice.updated',"
        " i, 'delivered', '{}', '\\x00', now() FROM unnest($1::bigint[]) w, generate_series(1, 250) i",
        hooks,
    )
    await pool.execute("VACUUM ANALYZE webhook_events, webhook_entity_state, pending_entities")
    # and then a pending event for each of 100 claimed invoices, at each of 20 webhooks
    await pool.execute(
        "INSERT INTO pending_entities (entity_type, entity_id, action, first_change_at, last_change_at, due_at,"
        " version, claimed_until) SELECT 'invoice', i, 'updated', now(), now(), now(), 1, now() + interval '1 minute'"
        " FROM generate_series(1, $1) i",
        ENTITIES,
    )
    await pool.execute(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, payload,"
        " payload_hash, changed_at) SELECT 'evt_' || w || '_' || i, w, 'invoice', i, 'invoice.updated', 1000 + i, '{}',"
        " '\\x00', now() FROM unnest($1::bigint[]) w, generate_series(1, $2) i",
        hooks, ENTITIES,
    )
    claimed = [enqueue.ClaimedVersion("invoice", i, 1, "updated") for i in range(1, ENTITIES + 1)]
    candidates = [
        enqueue.Candidate(w, "invoice", i, "payload", bytes([1]), True) for w in hooks for i in range(1, ENTITIES + 1)
    ]
    # when an enqueue prepares a new payload for every (webhook, invoice)
    async with pool.acquire() as conn, conn.transaction():
        # (with a plan made for the statistics, as the session's cached plan is once made)
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        prepared = await enqueue.prepare_enqueue(conn, claimed, hooks, candidates)
        read = await conn.fetchval(
            "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'webhook_events'"
        )
    # then each pending event is superseded, and the events were read about once per candidate
    # (the leased counts read none here: nothing is leased)
    assert len(prepared.superseded) == len(candidates)
    assert read <= 3 * len(candidates), f"{read:,} event rows read for {len(candidates):,} candidates"
