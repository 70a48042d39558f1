"""Recording a batch of attempt outcomes: one statement (delivery.record_attempts) writes the
attempts, the events' outcomes and wakes claimers only when something else became claimable."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from app.store import delivery
from app.store.delivery import EVENTS_CHANNEL, EventOutcome, attempt_values
from app.types import SendResult
from tests.support.engine_harness import add_webhook


async def _event(pool: asyncpg.Pool, webhook_id: int, entity_id: int, *, leased: bool) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, payload, "
            "payload_hash, changed_at, leased_until) VALUES ('evt_' || $1::bigint || '_' || $2::bigint, $1, "
            "'invoice', $2, 'invoice.updated', $2, '{}', '\\x00', now(), "
            "CASE WHEN $3 THEN now() + interval '1 minute' END) RETURNING id",
            webhook_id, entity_id, leased,
        )
    )


def _ok(status: int = 200) -> SendResult:
    return SendResult(datetime.now(UTC), 3, status_code=status, response_headers={"x": "y"}, response_body="ok")


class Notifications:
    """Every notification on the events channel, in order, as it arrives."""

    def __init__(self) -> None:
        self.payloads: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.payloads.put_nowait(payload)


async def _record(pool: asyncpg.Pool, outcomes: list[tuple[int, int, str, SendResult]]) -> None:
    in_1_min = datetime.now(UTC) + timedelta(minutes=1)
    async with pool.acquire() as conn:
        await delivery.record_attempts(
            conn,
            [attempt_values(event_id, hook_id, result) for event_id, hook_id, _, result in outcomes],
            [EventOutcome(event_id, status, in_1_min) for event_id, _, status, _ in outcomes],
            sorted({hook_id for _, hook_id, _, _ in outcomes}),
        )


async def test_one_statement_records_attempts_and_outcomes_and_wakes_claimers(
    fixture_pool: asyncpg.Pool, fixture_database_url: str
) -> None:
    # given a webhook with two events in flight and a third waiting, unleased, for a slot
    hook, _ = await add_webhook(fixture_pool, "http://127.0.0.1:9/hook")
    delivered = await _event(fixture_pool, hook, 1, leased=True)
    retried = await _event(fixture_pool, hook, 2, leased=True)
    await _event(fixture_pool, hook, 3, leased=False)
    listener, heard = await asyncpg.connect(fixture_database_url), Notifications()
    await listener.add_listener(EVENTS_CHANNEL, heard)
    try:
        # when one was delivered and the other is to be retried
        await _record(fixture_pool, [(delivered, hook, "delivered", _ok()), (retried, hook, "pending", _ok(503))])
        # then each has its attempt, its lease is released and its status applied
        found = await fixture_pool.fetch("SELECT * FROM webhook_events WHERE webhook_id = $1", hook)
        rows = {r["id"]: r for r in found}
        assert (rows[delivered]["status"], rows[delivered]["attempts"], rows[delivered]["leased_until"]) == (
            "delivered", 1, None,
        )
        assert rows[retried]["status"] == "pending" and rows[retried]["next_attempt_at"] > datetime.now(UTC)
        attempts = await fixture_pool.fetch("SELECT event_id, status_code FROM webhook_attempts ORDER BY id")
        assert [(a["event_id"], a["status_code"]) for a in attempts] == [(delivered, 200), (retried, 503)]
        # and the claimers are woken: the third event is claimable
        assert await asyncio.wait_for(heard.payloads.get(), 5) == ""
    finally:
        await listener.close()


async def test_nothing_else_claimable_wakes_no_one(fixture_pool: asyncpg.Pool, fixture_database_url: str) -> None:
    # given a webhook whose only event is in flight
    hook, _ = await add_webhook(fixture_pool, "http://127.0.0.1:9/hook")
    event = await _event(fixture_pool, hook, 1, leased=True)
    listener, heard = await asyncpg.connect(fixture_database_url), Notifications()
    await listener.add_listener(EVENTS_CHANNEL, heard)
    try:
        # when its outcome is recorded, then a marker is sent
        await _record(fixture_pool, [(event, hook, "delivered", _ok())])
        await fixture_pool.execute("SELECT pg_notify($1, 'marker')", EVENTS_CHANNEL)
        # then the marker is the first notification: recording woke no one
        assert await asyncio.wait_for(heard.payloads.get(), 5) == "marker"
    finally:
        await listener.close()


async def test_a_webhook_deleted_while_its_attempt_was_in_flight_drops_only_its_attempt(
    fixture_pool: asyncpg.Pool,
) -> None:
    # given two webhooks with an event in flight each; one is deleted (its events go with it)
    kept, _ = await add_webhook(fixture_pool, "http://127.0.0.1:9/kept")
    gone, _ = await add_webhook(fixture_pool, "http://127.0.0.1:9/gone")
    kept_event = await _event(fixture_pool, kept, 1, leased=True)
    gone_event = await _event(fixture_pool, gone, 1, leased=True)
    await fixture_pool.execute("DELETE FROM webhooks WHERE id = $1", gone)
    # when both outcomes are recorded in one batch
    await _record(fixture_pool, [(kept_event, kept, "delivered", _ok()), (gone_event, gone, "delivered", _ok())])
    # then the kept webhook's attempt and outcome are there, and nothing of the deleted one
    attempts = await fixture_pool.fetch("SELECT event_id, webhook_id FROM webhook_attempts")
    assert [(a["event_id"], a["webhook_id"]) for a in attempts] == [(kept_event, kept)]
    assert await fixture_pool.fetchval("SELECT status FROM webhook_events WHERE id = $1", kept_event) == "delivered"
