"""Delivery rules end to end: retries, Retry-After, attempt budget, 410, 429, concurrency,
ordering, isolation between webhooks, shutdown."""

import asyncio
import json

import asyncpg
import pytest

from app.policy.ids import encode as global_id
from app.store import delivery
from tests.support.engine_harness import add_webhook, bodies, events, fast, running_engine, settled, wait_until
from tests.support.receivers import Receiver


async def _statuses(pool: asyncpg.Pool, hook: int) -> list[str]:
    return [r["status"] for r in await events(pool, hook)]


async def test_failures_are_retried_until_delivered(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (500, {}, b"down") if n <= 2 else (200, {}, b"ok")).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await wait_until(lambda: _has(run.pool, hook, "delivered"))
            [event] = await events(run.pool, hook)
            attempts = await run.pool.fetch(
                "SELECT status_code FROM webhook_attempts WHERE event_id = $1 ORDER BY id", event["id"]
            )
    finally:
        await receiver.stop()
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert event["attempts"] == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # same id on every retry


async def _has(pool: asyncpg.Pool, hook: int, status: str, n: int = 1) -> bool:
    return (
        await pool.fetchval("SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND status = $2", hook, status)
    ) >= n


async def test_retry_after_is_honoured_and_capped(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (503, {"Retry-After": "3600"}, b"")).start()
    try:
        async with running_engine(fixture_database_url, fast(retry_max_ms=60_000)) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await receiver.wait_for(1)
            await wait_until(
                lambda: run.pool.fetchval("SELECT attempts = 1 FROM webhook_events WHERE webhook_id = $1", hook)
            )
            delay_s = await run.pool.fetchval(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM webhook_events WHERE webhook_id = $1", hook
            )
    finally:
        await receiver.stop()
    assert 50 < delay_s <= 60  # asked for an hour, capped at RETRY_MAX_MS


async def test_attempt_budget_ends_in_failed(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (500, {}, b"")).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, max_attempts=3)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await wait_until(lambda: _has(run.pool, hook, "failed"))
            await wait_until(lambda: settled(run.pool))
            # health is recorded just after the outcome
            await wait_until(lambda: run.pool.fetchval(
                "SELECT failing_since IS NOT NULL FROM webhooks WHERE id = $1", hook))
            hook_row = await run.pool.fetchrow("SELECT enabled, failing_since FROM webhooks WHERE id = $1", hook)
    finally:
        await receiver.stop()
    assert len(receiver.received) == 3
    assert hook_row["enabled"] and hook_row["failing_since"] is not None


async def test_410_disables_the_webhook_at_once(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (410, {}, b"gone")).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id IN (3, 4)")
            await wait_until(lambda: run.pool.fetchval("SELECT NOT enabled FROM webhooks WHERE id = $1", hook))
            row = await run.pool.fetchrow("SELECT disabled_reason FROM webhooks WHERE id = $1", hook)
    finally:
        await receiver.stop()
    assert row["disabled_reason"] == "receiver answered 410 Gone"
    assert len(receiver.received) <= 2  # nothing more after the 410s


async def test_429_halves_live_concurrency_and_successes_restore_it(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (429, {"Retry-After": "1"}, b"") if n <= 1 else (200, {}, b"")).start()
    try:
        async with running_engine(fixture_database_url, fast(retry_max_ms=1000)) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=8, live_concurrency=8)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await wait_until(lambda: run.pool.fetchval("SELECT live_concurrency = 4 FROM webhooks WHERE id = $1", hook))
            await wait_until(lambda: _has(run.pool, hook, "delivered"))
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 10 AND 20")
            await wait_until(lambda: _has(run.pool, hook, "delivered", 12))
            # Health is recorded just after the outcomes: +1 per success, never above `concurrency`.
            await wait_until(lambda: run.pool.fetchval("SELECT live_concurrency = 8 FROM webhooks WHERE id = $1", hook))
            await wait_until(lambda: settled(run.pool))  # no outcome left to move it
            live = await run.pool.fetchval("SELECT live_concurrency FROM webhooks WHERE id = $1", hook)
    finally:
        await receiver.stop()
    assert live == 8


async def test_concurrency_per_webhook_is_respected(fixture_database_url: str) -> None:
    receiver = await Receiver(delay_s=0.1).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=3, live_concurrency=3)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 30")
            await wait_until(lambda: _has(run.pool, hook, "delivered", 30))
    finally:
        await receiver.stop()
    assert receiver.max_in_flight <= 3
    assert receiver.max_in_flight >= 2  # and it does run them in parallel


async def test_a_newer_state_supersedes_a_failing_older_one_and_arrives_last(fixture_database_url: str) -> None:
    state = {"fail": True}
    receiver = await Receiver(respond=lambda n: (500, {}, b"") if state["fail"] else (200, {}, b"")).start()
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=300, retry_max_ms=300)) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 5")
            await receiver.wait_for(1)  # event 1 failing
            await run.pool.execute("UPDATE invoices SET status = 'refunded' WHERE id = 5")
            await wait_until(lambda: _has(run.pool, hook, "superseded"))
            state["fail"] = False
            await wait_until(lambda: _has(run.pool, hook, "delivered"))
            await wait_until(lambda: settled(run.pool))
            rows = await events(run.pool, hook)
    finally:
        await receiver.stop()
    assert [r["status"] for r in rows] == ["superseded", "delivered"]
    assert rows[1]["attempts"] >= 1  # inherited the retry clock of the one it replaced
    last = json.loads(receiver.received[-1].body)
    assert last["payload"]["data"]["node"]["status"] == "REFUNDED"
    assert all(json.loads(r.body)["sequence"] <= last["sequence"] for r in receiver.received)


async def test_a_hanging_receiver_delays_only_its_own_webhook(fixture_database_url: str) -> None:
    slow = await Receiver(delay_s=5).start()
    quick = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            await add_webhook(run.pool, slow.url, timeout_seconds=1, concurrency=2, live_concurrency=2)
            quick_hook, _ = await add_webhook(run.pool, quick.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 20")
            loop = asyncio.get_running_loop()
            started = loop.time()
            await wait_until(lambda: _has(run.pool, quick_hook, "delivered", 20))
            elapsed_s = loop.time() - started
    finally:
        await slow.stop()
        await quick.stop()
    assert elapsed_s < 1.5


async def test_webhook_changes_apply_from_the_next_attempt(fixture_database_url: str) -> None:
    old = await Receiver(respond=lambda n: (500, {}, b"")).start()
    new = await Receiver().start()
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=200, retry_max_ms=200)) as run:
            hook, _ = await add_webhook(run.pool, old.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await old.wait_for(1)
            await run.pool.execute("UPDATE webhooks SET url = $2 WHERE id = $1", hook, new.url)
            await new.wait_for(1)
    finally:
        await old.stop()
        await new.stop()
    assert json.loads(new.received[0].body)["id"] == json.loads(old.received[0].body)["id"]


async def test_stop_gives_back_leases_of_attempts_cut_short(fixture_database_url: str) -> None:
    receiver = await Receiver(delay_s=10).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, timeout_seconds=30)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await receiver.wait_for(1)
            await run.engine.stop(0.2)
            leased = await run.pool.fetchval(
                "SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND leased_until IS NOT NULL", hook
            )
    finally:
        await receiver.stop()
    assert leased == 0


async def test_finished_events_are_pruned_after_retention(pool: asyncpg.Pool) -> None:
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/")
    for status, age in [("delivered", "4 days"), ("skipped", "4 days"), ("delivered", "1 hour"), ("failed", "9 days")]:
        await pool.execute(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status, "
            "payload, payload_hash, changed_at, finished_at) VALUES (gen_random_uuid()::text, $1, 'invoice', 1, "
            "'invoice.updated', 1, $2, '{}', '\\x00', now(), now() - $3::text::interval)",
            hook,
            status,
            age,
        )
    async with pool.acquire() as conn:
        pruned = await delivery.prune(conn, 3 * 86400, 100)
    assert pruned == 2
    assert sorted(await _statuses(pool, hook)) == ["delivered", "failed"]


async def test_deleting_a_webhook_while_its_attempt_is_in_flight_does_not_jam_delivery(
    fixture_database_url: str,
) -> None:
    slow = await Receiver(delay_s=1.0).start()
    quick = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            doomed, _ = await add_webhook(run.pool, slow.url)
            await add_webhook(run.pool, quick.url, entity_type="variant",
                              query="query($id: ID!) { variant(id: $id) { sku } }")
            await run.pool.execute("UPDATE invoices SET status = status WHERE id = 1")
            await wait_until(lambda: slow.in_flight == 1)
            await run.pool.execute("DELETE FROM webhooks WHERE id = $1", doomed)
            await wait_until(lambda: slow.in_flight == 0)  # the attempt comes back for an event that no longer exists
            await run.pool.execute("UPDATE variants SET sku = sku || 'x' WHERE id = 1")
            await quick.wait_for(1, timeout_s=5)
            await wait_until(lambda: settled(run.pool), timeout_s=5)
            rows = await run.pool.fetch("SELECT status, leased_until FROM webhook_events")
    finally:
        await slow.stop()
        await quick.stop()
    assert [r["status"] for r in rows] == ["delivered"]
    assert all(r["leased_until"] is None for r in rows)  # the recorder kept recording


async def _leased(pool: asyncpg.Pool, hook: int) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND leased_until > now()", hook))


async def _none_leased(pool: asyncpg.Pool, hook: int) -> bool:
    return await _leased(pool, hook) == 0


async def test_a_busy_webhook_is_claimed_ahead_and_still_sent_within_its_concurrency(
    fixture_database_url: str,
) -> None:
    # given a healthy webhook with concurrency 2 and a slow receiver
    receiver = await Receiver(delay_s=0.1).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=2, live_concurrency=2)
            # when 20 invoices change at once
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 20")
            await receiver.wait_for(1)
            # then one process holds more leases than it sends at once …
            held = await _leased(run.pool, hook)
            await wait_until(lambda: _has(run.pool, hook, "delivered", 20))
    finally:
        await receiver.stop()
    assert held > 2
    # … and the receiver never sees more than 2 requests at a time
    assert receiver.max_in_flight == 2
    assert len(receiver.received) == 20


async def test_a_410_stops_the_attempts_waiting_behind_it(fixture_database_url: str) -> None:
    # given a webhook sending one at a time, with many events claimed ahead
    receiver = await Receiver(respond=lambda n: (410, {}, b"gone"), delay_s=0.05).start()
    sentinel = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=1, live_concurrency=1)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 10")
            # when the receiver answers 410 Gone
            await wait_until(lambda: run.pool.fetchval("SELECT NOT enabled FROM webhooks WHERE id = $1", hook))
            await wait_until(lambda: _none_leased(run.pool, hook))  # the waiting ones are given back
            # and the engine goes on to deliver a later change to another webhook
            await add_webhook(run.pool, sentinel.url)
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 11")
            await sentinel.wait_for(1)
    finally:
        await receiver.stop()
        await sentinel.stop()
    # then nothing was sent after it
    assert len(receiver.received) == 1


async def test_an_event_cancelled_while_waiting_in_the_process_is_not_sent(fixture_database_url: str) -> None:
    # given a webhook sending one at a time to a slow receiver, leases renewed often
    receiver = await Receiver(delay_s=0.2).start()
    try:
        async with running_engine(fixture_database_url) as run:
            run.engine.dispatcher.renew_every_s = 0.05
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=1, live_concurrency=1)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 5")
            await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval(
                "SELECT count(*) = 5 FROM webhook_events WHERE webhook_id = $1 AND leased_until > now()", hook))
            # when an event held and waiting its turn (not the one being sent) is cancelled
            first = json.loads(receiver.received[0].body)["id"]
            cancelled = await run.pool.fetchval(
                "UPDATE webhook_events SET status = 'cancelled', finished_at = now() WHERE id = "
                "(SELECT max(id) FROM webhook_events WHERE webhook_id = $1 AND status = 'pending' "
                " AND public_id <> $2 AND leased_until IS NOT NULL) "
                "RETURNING public_id",
                hook,
                first,
            )
            assert cancelled is not None
            await wait_until(lambda: _has(run.pool, hook, "delivered", 4))
            await wait_until(lambda: settled(run.pool))  # every event's outcome recorded: nothing more is sent
    finally:
        await receiver.stop()
    # then the other four arrive and the cancelled one never does
    sent = [json.loads(r.body)["id"] for r in receiver.received]
    assert cancelled not in sent and len(sent) == 4


async def test_fresh_events_are_handed_to_the_local_dispatcher_without_a_claim(
    fixture_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an engine whose dispatcher can claim nothing
    claims: list[int] = []

    async def claim_nothing(*args: object, **kwargs: object) -> list[asyncpg.Record]:
        claims.append(1)
        return []

    monkeypatch.setattr(delivery, "claim_events", claim_nothing)
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            # when invoices change
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 3")
            # then the listener's dispatcher sends them as they are enqueued
            await wait_until(lambda: _has(run.pool, hook, "delivered", 3))
    finally:
        await receiver.stop()
    assert claims  # the claim loop did run, and found nothing to claim
    assert sorted(b["payload"]["data"]["node"]["id"] for b in bodies(receiver.received)) == sorted(
        global_id("Invoice", i) for i in (1, 2, 3)
    )


async def test_a_change_made_while_the_previous_state_is_in_flight_waits_for_it(fixture_database_url: str) -> None:
    # given an invoice's event in flight to a slow receiver
    receiver = await Receiver(delay_s=0.4).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 5")
            await receiver.wait_for(1)
            # when it changes again meanwhile
            await run.pool.execute("UPDATE invoices SET status = 'refunded' WHERE id = 5")
            await receiver.wait_for(2)
            await wait_until(lambda: _none_leased(run.pool, hook))
    finally:
        await receiver.stop()
    # then the newer state is not sent beside the older one (it is not handed over while that
    # is leased) and arrives after it
    assert receiver.max_in_flight == 1
    states = [b["payload"]["data"]["node"]["status"] for b in bodies(receiver.received)]
    assert states == ["PAID", "REFUNDED"]


async def test_events_beyond_the_handoff_budget_are_claimed_as_room_frees(fixture_database_url: str) -> None:
    # given a webhook sending one at a time: 25 events may be handed over or claimed ahead
    receiver = await Receiver(delay_s=0.01).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, concurrency=1, live_concurrency=1)
            # when 40 invoices change at once
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id BETWEEN 1 AND 40")
            # then the 15 left to claims follow as recorded outcomes free the budget
            await wait_until(lambda: _has(run.pool, hook, "delivered", 40), timeout_s=30)
    finally:
        await receiver.stop()
    assert receiver.max_in_flight == 1
    assert len({b["payload"]["data"]["node"]["id"] for b in bodies(receiver.received)}) == 40
