"""The enqueue statements (app.store.enqueue) on their own: what `finish_enqueue` leaves of an
entity that changed while it was evaluated ('moved')."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from app.store import enqueue

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
