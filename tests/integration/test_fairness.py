"""Fair delivery across owners (app.policy.lanes), end to end: a seller whose receivers hang holds only
its share of the send slots, and another owner's deliveries go out on time meanwhile."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import asyncpg

from app.policy.ids import encode as global_id
from app.policy.lanes import owner_max_held
from app.store import delivery
from tests.support.engine_harness import Running, add_webhook, bodies, due_events, fast, running_engine, wait_until
from tests.support.receivers import HangingReceiver, Receiver

ATTACKER = 3  # the fixtures' seller with the most invoices (34)
VICTIM_INVOICE = 11  # seller 1's


@dataclass
class World:
    """A running engine (4 send slots per owner) with seller ATTACKER's webhooks at a receiver that
    never answers, and one webhook at a receiver that does."""

    run: Running
    hanging: HangingReceiver
    normal: Receiver


@asynccontextmanager
async def hanging_seller(
    database_url: str, *, hanging_webhooks: int, timeout_seconds: int, healthy_seller_id: int | None = None
) -> AsyncIterator[World]:
    """`hanging_webhooks` webhooks of seller ATTACKER (concurrency 100, `timeout_seconds`) at the
    hanging receiver, and one webhook — the operator's, or `healthy_seller_id`'s — at the normal
    one. The hanging receiver is released before the engine stops, so the stop records the
    attempts it held."""
    # A request the engine gave up on (its timeout) is no longer counted in flight.
    hanging = await HangingReceiver(cancel_abandoned=True).start()
    normal = await Receiver().start()
    try:
        async with running_engine(database_url, fast(owner_max_sending=4)) as run:
            try:
                for _ in range(hanging_webhooks):
                    await add_webhook(run.pool, hanging.url, seller_id=ATTACKER, concurrency=100,
                                      live_concurrency=100, timeout_seconds=timeout_seconds)
                await add_webhook(run.pool, normal.url, seller_id=healthy_seller_id)
                yield World(run, hanging, normal)
            finally:
                await hanging.release()
    finally:
        await hanging.stop()
        await normal.stop()


async def _claim(pool: asyncpg.Pool, limit: int, owner_max_held: int) -> Counter[int]:
    async with pool.acquire() as conn:
        rows = await delivery.claim_events(conn, limit, 20.0, 5000, [], 25, owner_max_held)
    return Counter(r.webhook_id for r in rows)


async def test_a_claim_leases_an_owner_at_most_its_held_share(pool: asyncpg.Pool) -> None:
    # given seller 1 with a busy webhook (4 of its events in flight), a failing one and a small
    # one; seller 2 and the operator with a few events each
    await pool.execute("INSERT INTO sellers (id, name) VALUES (1, 'one'), (2, 'two')")
    busy, _ = await add_webhook(pool, "http://x", seller_id=1, concurrency=100, live_concurrency=100)
    failing, _ = await add_webhook(pool, "http://x", seller_id=1, concurrency=100, live_concurrency=5,
                                   failing_since=datetime.now(UTC))
    small, _ = await add_webhook(pool, "http://x", seller_id=1, concurrency=10, live_concurrency=10)
    other, _ = await add_webhook(pool, "http://x", seller_id=2)
    operator, _ = await add_webhook(pool, "http://x")
    await due_events(pool, busy, 300, leased=4)
    await due_events(pool, failing, 300)
    for hook in (small, other, operator):
        await due_events(pool, hook, 5)
    # when this process has room for 3 events only, then the owners take turns for it
    first = await _claim(pool, limit=3, owner_max_held=20)
    assert sorted(first.values()) == [1, 1, 1] and first[other] == first[operator] == 1
    # when it has room for many, then seller 1 gets what its share of 20 leaves (20 - 4 in flight
    # - 1 just claimed): its webhooks the fewest-held first, the failing one one round (5) at most
    second = await _claim(pool, limit=1000, owner_max_held=20)
    assert second[busy] + second[failing] + second[small] + first[busy] + first[failing] + first[small] == 16
    assert first[small] + second[small] == 5 and first[failing] + second[failing] == 5
    assert first[other] + second[other] == 5 and first[operator] + second[operator] == 5
    # and a claim leases it nothing more while its share is leased
    assert await _claim(pool, limit=1000, owner_max_held=20) == Counter()


async def test_finished_attempts_waiting_for_the_recorder_hold_no_slot_but_count_against_their_owners_share(
    pool: asyncpg.Pool,
) -> None:
    # given a seller's webhook with 6 events in flight, 4 of them finished here and waiting for
    # this process's recorder, and 20 more due
    await pool.execute("INSERT INTO sellers (id, name) VALUES (1, 'one')")
    hook, _ = await add_webhook(pool, "http://x", seller_id=1, concurrency=10, live_concurrency=10)
    await due_events(pool, hook, 26, leased=6)
    finished = [r["id"] for r in await pool.fetch(
        "SELECT id FROM webhook_events WHERE leased_until IS NOT NULL ORDER BY id LIMIT 4")]
    # when this process claims with room for everything, the owner holding at most 10
    async with pool.acquire() as conn:
        rows = await delivery.claim_events(conn, 1000, 20.0, 5000, finished, 1, 10)
    # then the finished ones free their slots (the webhook's 10, 2 of them sending) but not the
    # owner's held events: 10 held less the 6 leased, finished or not
    assert len(rows) == 4


async def test_a_claimed_row_reads_every_column_into_its_field(pool: asyncpg.Pool) -> None:
    # given a due event of a webhook
    hook, _ = await add_webhook(pool, "http://x/hook")
    await due_events(pool, hook, 1)
    # when it is claimed with the statement itself
    async with pool.acquire() as conn:
        [record] = await conn.fetch(
            *delivery.Q.claim_events(limit=1, lease_s=20.0, scan_limit=10, finished=[], ahead=1, owner_max_held=10)
        )
    # then the statement's columns are ClaimedEvent's fields, in order (from_row reads by position)
    claimed = delivery.ClaimedEvent.from_row(record)
    assert list(record.keys()) == [f.name for f in fields(delivery.ClaimedEvent)]
    columns = dict(record.items())
    assert {name: getattr(claimed, name) for name in columns} == columns
    assert (claimed.webhook_id, claimed.url, claimed.payload) == (hook, "http://x/hook", "{}")


def _delivered(receiver: Receiver, invoice_id: int) -> bool:
    wanted = global_id("Invoice", invoice_id)
    return any(b["entity"]["id"] == wanted for b in bodies(receiver.received))


async def test_a_seller_with_hanging_receivers_holds_only_its_share_and_the_operator_is_on_time(
    fixture_database_url: str,
) -> None:
    # given a seller with 8 webhooks of concurrency 100 at a receiver that never answers, and the
    # operator's webhook at a receiver that does
    async with hanging_seller(fixture_database_url, hanging_webhooks=8, timeout_seconds=10) as world:
        settings, pool, hanging = world.run.settings, world.run.pool, world.hanging
        # when the seller changes all its invoices (34 × 8 events, more than the process's
        # 256 send slots) and its receiver holds every request it gets
        await pool.execute("UPDATE invoices SET status = 'refunded' WHERE seller_id = $1", ATTACKER)
        await wait_until(lambda: hanging.in_flight >= settings.owner_max_sending)
        # and then another seller's invoice changes
        loop = asyncio.get_running_loop()
        changed_at = loop.time()
        await pool.execute("UPDATE invoices SET status = 'refunded' WHERE id = $1", VICTIM_INVOICE)
        await wait_until(lambda: _delivered(world.normal, VICTIM_INVOICE), timeout_s=30)
        latency_s = loop.time() - changed_at
        held_open = hanging.in_flight
        attacker_leased = await pool.fetchval(
            "SELECT count(*) FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id "
            "WHERE w.seller_id = $1 AND e.leased_until > now()",
            ATTACKER,
        )
    # then the operator's delivery arrives within its debounce plus 1 s
    assert latency_s <= settings.debounce_ms / 1000 + 1.0, f"operator's delivery took {latency_s:.1f} s"
    # and the seller never had more than its share of send slots, and used all of it
    assert hanging.max_in_flight == settings.owner_max_sending == held_open
    # and of its 272 events, it holds leased only its share of held events
    assert attacker_leased == owner_max_held(settings.owner_max_sending)


async def test_a_sellers_healthy_webhook_keeps_delivering_beside_its_own_hanging_ones(
    fixture_database_url: str,
) -> None:
    # given a seller with 4 webhooks at a receiver that never answers (timeout 1 s, retried
    # again and again) and one at a receiver that does, sharing the seller's 4 send slots
    async with hanging_seller(
        fixture_database_url, hanging_webhooks=4, timeout_seconds=1, healthy_seller_id=ATTACKER
    ) as world:
        # when the seller changes all its invoices
        await world.run.pool.execute("UPDATE invoices SET status = 'refunded' WHERE seller_id = $1", ATTACKER)
        # then its healthy webhook gets every one of them while the others keep hanging:
        # their failing attempts hold at most half the seller's slots
        # (each of them holds a slot for one timeout before it is known to be failing)
        await world.normal.wait_for(34, timeout_s=30)
        still_hanging = world.hanging.in_flight
    assert still_hanging > 0
