"""The event log through the API: paging, retry and cancel rules, replay, and seller isolation of
every event query and mutation."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.api.ids import to_global_id
from app.policy.envelope import payload_hash
from app.policy.ids import decode_any
from app.types import OPERATOR, Visibility
from tests.integration.test_api_webhooks import create, gql
from tests.support.engine_harness import running_engine, wait_until
from tests.support.receivers import Receiver

RETRY = "mutation($id: ID!) { webhookEventRetry(id: $id) { event { status attemptCount } errors { field message } } }"
CANCEL = "mutation($id: ID!) { webhookEventCancel(id: $id) { event { status } errors { field message } } }"
REPLAY = """mutation($id: ID!, $since: DateTime!) { webhookReplay(webhookId: $id, since: $since) {
  queued errors { field message } } }"""
STATUS_QUERY = "query($id: ID!) { invoice(id: $id) { status } }"


async def add_event(
    pool: asyncpg.Pool,
    webhook_id: int,
    entity_id: int | None,
    status: str,
    *,
    event: str = "invoice.updated",
    payload: Any = None,
    age: timedelta = timedelta(0),
) -> int:
    """An event row as the engine would have left it; returns its id."""
    payload = {} if payload is None else payload
    sequence = await pool.fetchval(
        "UPDATE webhooks SET last_sequence = last_sequence + 1 WHERE id = $1 RETURNING last_sequence", webhook_id
    )
    return int(
        await pool.fetchval(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status, "
            "payload, payload_hash, changed_at, attempts, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7, $8, $9, now() - $10::interval, 3, now() - $10::interval, "
            "CASE WHEN $7 <> 'pending' THEN now() END) RETURNING id",
            f"evt_test{sequence}_{webhook_id}",
            webhook_id,
            "invoice" if entity_id is not None else None,
            entity_id,
            event if entity_id is not None else "ping",
            sequence,
            status,
            payload,
            payload_hash(payload),
            age,
        )
    )


async def new_webhook(pool: asyncpg.Pool, visibility: Visibility = OPERATOR, **fields: Any) -> tuple[str, int]:
    out = await create(pool, visibility, **fields)
    assert out["errors"] == [], out["errors"]
    decoded = decode_any(out["webhook"]["id"])
    assert decoded is not None
    return out["webhook"]["id"], decoded[1]


def gid(event_id: int) -> str:
    return to_global_id("WebhookEvent", event_id)


async def status_of(pool: asyncpg.Pool, event_id: int) -> str:
    return str(await pool.fetchval("SELECT status FROM webhook_events WHERE id = $1", event_id))


async def test_events_page_newest_first_with_a_status_filter(fixture_pool: asyncpg.Pool) -> None:
    # given five events, two of them failed
    hook, hook_id = await new_webhook(fixture_pool)
    ids = [await add_event(fixture_pool, hook_id, n, "failed" if n % 2 else "delivered") for n in range(1, 6)]
    page = """query($id: ID!, $after: String) { webhook(id: $id) { events(first: 2, after: $after) {
      edges { node { id status sequence } } pageInfo { hasNextPage endCursor } } } }"""
    # when the log is read two at a time
    seen: list[str] = []
    after = None
    while True:
        data = (await gql(fixture_pool, page, id=hook, after=after))["webhook"]["events"]
        seen += [e["node"]["id"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    # then every event comes once, newest first; and the filter keeps only failed ones
    assert seen == [gid(i) for i in reversed(ids)]
    only_failed = "query($id: ID!) { webhook(id: $id) { events(status: FAILED) { edges { node { id } } } } }"
    failed = await gql(fixture_pool, only_failed, id=hook)
    assert [e["node"]["id"] for e in failed["webhook"]["events"]["edges"]] == [gid(ids[4]), gid(ids[2]), gid(ids[0])]


async def test_retrying_events_are_found_by_the_retrying_filter(fixture_pool: asyncpg.Pool) -> None:
    # given a pending event never tried, a pending event that failed once, and a failed one
    hook, hook_id = await new_webhook(fixture_pool)
    fresh = await add_event(fixture_pool, hook_id, 1, "pending")
    retrying = await add_event(fixture_pool, hook_id, 2, "pending")
    failed = await add_event(fixture_pool, hook_id, 3, "failed")
    await fixture_pool.execute("UPDATE webhook_events SET attempts = 0 WHERE id = $1", fresh)
    await fixture_pool.execute("UPDATE webhook_events SET attempts = 1 WHERE id = $1", retrying)
    query = """query($id: ID!, $status: WebhookEventStatus, $retrying: Boolean) { webhook(id: $id) {
      events(status: $status, retrying: $retrying) { edges { node { id attemptCount } } } } }"""

    async def found(**filters: Any) -> list[str]:
        data = await gql(fixture_pool, query, id=hook, **filters)
        return [e["node"]["id"] for e in data["webhook"]["events"]["edges"]]

    # then FAILED is the events out of attempts; retrying: true the ones still retrying
    assert await found(status="FAILED") == [gid(failed)]
    assert await found(retrying=True) == [gid(retrying)]
    assert await found(status="PENDING", retrying=True) == [gid(retrying)]
    assert await found(status="PENDING", retrying=False) == [gid(fresh)]
    assert await found(retrying=False) == [gid(failed), gid(fresh)]
    assert await found(status="FAILED", retrying=True) == []


async def test_retry_requeues_a_failed_event_with_a_fresh_budget(fixture_pool: asyncpg.Pool) -> None:
    _, hook_id = await new_webhook(fixture_pool)
    failed = await add_event(fixture_pool, hook_id, 1, "failed")
    data = await gql(fixture_pool, RETRY, id=gid(failed))
    assert data["webhookEventRetry"] == {"event": {"status": "PENDING", "attemptCount": 0}, "errors": []}
    row = await fixture_pool.fetchrow("SELECT next_attempt_at, finished_at FROM webhook_events WHERE id = $1", failed)
    assert row["finished_at"] is None and row["next_attempt_at"] <= datetime.now(UTC)


async def test_retry_is_refused_while_a_newer_event_for_the_entity_is_pending(fixture_pool: asyncpg.Pool) -> None:
    # given a failed event and a fresher pending one for the same invoice
    _, hook_id = await new_webhook(fixture_pool)
    failed = await add_event(fixture_pool, hook_id, 1, "failed")
    await add_event(fixture_pool, hook_id, 1, "pending")
    # when the failed one is retried
    data = await gql(fixture_pool, RETRY, id=gid(failed))
    # then it is refused, and stays failed: the older state must not go out after the fresher one
    assert data["webhookEventRetry"]["event"] is None
    assert "a newer event for this entity is pending" in data["webhookEventRetry"]["errors"][0]["message"]
    assert await status_of(fixture_pool, failed) == "failed"


async def test_retry_is_refused_when_a_newer_state_was_sent(fixture_pool: asyncpg.Pool) -> None:
    _, hook_id = await new_webhook(fixture_pool)
    failed = await add_event(fixture_pool, hook_id, 1, "failed")
    delivered = await add_event(fixture_pool, hook_id, 1, "delivered")
    ping = await add_event(fixture_pool, hook_id, None, "failed")
    for event_id, message in (
        (failed, "a newer event for this entity exists"),
        (delivered, "only failed or cancelled events can be retried; this one is delivered"),
        (ping, "a ping cannot be retried"),
    ):
        data = await gql(fixture_pool, RETRY, id=gid(event_id))
        assert message in data["webhookEventRetry"]["errors"][0]["message"]
    assert [await status_of(fixture_pool, i) for i in (failed, delivered, ping)] == ["failed", "delivered", "failed"]


async def test_cancel_stops_a_pending_event_only(fixture_pool: asyncpg.Pool) -> None:
    _, hook_id = await new_webhook(fixture_pool)
    pending = await add_event(fixture_pool, hook_id, 1, "pending")
    await fixture_pool.execute(
        "INSERT INTO webhook_entity_state VALUES ($1, 'invoice', 1, $2)", hook_id, payload_hash({})
    )
    data = await gql(fixture_pool, CANCEL, id=gid(pending))
    assert data["webhookEventCancel"] == {"event": {"status": "CANCELLED"}, "errors": []}
    # the cancelled payload is forgotten: the next change is delivered, not skipped as identical
    assert await fixture_pool.fetchval("SELECT last_payload_hash FROM webhook_entity_state") is None
    again = await gql(fixture_pool, CANCEL, id=gid(pending))
    assert again["webhookEventCancel"]["errors"][0]["message"] == (
        "only pending events can be cancelled; this one is cancelled"
    )
    # and a cancelled event can be retried (nothing newer exists)
    assert (await gql(fixture_pool, RETRY, id=gid(pending)))["webhookEventRetry"]["event"]["status"] == "PENDING"


async def test_another_sellers_events_are_not_found_by_any_path(fixture_pool: asyncpg.Pool) -> None:
    # given seller 2's webhook with a failed and a pending event
    hook, hook_id = await new_webhook(fixture_pool, Visibility(2))
    failed = await add_event(fixture_pool, hook_id, 1, "failed")
    pending = await add_event(fixture_pool, hook_id, 2, "pending")
    other = Visibility(1)
    # when seller 1 reads or acts on them
    read = await gql(
        fixture_pool,
        "query($e: ID!, $w: ID!) { webhookEvent(id: $e) { id } webhook(id: $w) { id } }",
        other,
        e=gid(failed),
        w=hook,
    )
    retried = await gql(fixture_pool, RETRY, other, id=gid(failed))
    cancelled = await gql(fixture_pool, CANCEL, other, id=gid(pending))
    replayed = await gql(fixture_pool, REPLAY, other, id=hook, since="2000-01-01T00:00:00Z")
    # then everything is "not found", exactly as for ids that do not exist, and nothing changed
    assert read == {"webhookEvent": None, "webhook": None}
    assert retried["webhookEventRetry"]["errors"] == [{"field": "id", "message": "event not found"}]
    assert cancelled["webhookEventCancel"]["errors"] == [{"field": "id", "message": "event not found"}]
    missing = await gql(fixture_pool, RETRY, other, id=gid(10**9))
    assert missing["webhookEventRetry"]["errors"] == retried["webhookEventRetry"]["errors"]
    assert replayed["webhookReplay"]["errors"] == [{"field": "webhookId", "message": "webhook not found"}]
    assert (await status_of(fixture_pool, failed), await status_of(fixture_pool, pending)) == ("failed", "pending")
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 2
    # while the owner may
    own = await gql(fixture_pool, "query($e: ID!) { webhookEvent(id: $e) { status } }", Visibility(2), e=gid(failed))
    assert own == {"webhookEvent": {"status": "FAILED"}}
    assert (await gql(fixture_pool, CANCEL, Visibility(2), id=gid(pending)))["webhookEventCancel"]["errors"] == []


async def test_an_operators_webhook_is_invisible_to_sellers(fixture_pool: asyncpg.Pool) -> None:
    hook, hook_id = await new_webhook(fixture_pool)
    event = await add_event(fixture_pool, hook_id, 1, "failed")
    data = await gql(
        fixture_pool,
        "query($e: ID!, $w: ID!) { webhookEvent(id: $e) { id } webhook(id: $w) { id } webhooks { id } }",
        Visibility(1),
        e=gid(event),
        w=hook,
    )
    assert data == {"webhookEvent": None, "webhook": None, "webhooks": []}


async def test_preview_with_a_seller_key_sees_its_own_entities(fixture_pool: asyncpg.Pool) -> None:
    own = await fixture_pool.fetchval("SELECT id FROM invoices WHERE seller_id = 1 ORDER BY id LIMIT 1")
    theirs = await fixture_pool.fetchval("SELECT id FROM invoices WHERE seller_id = 2 ORDER BY id LIMIT 1")
    preview = """mutation($e: ID!) { webhookPreview(type: INVOICE,
      query: "query($id: ID!) { invoice(id: $id) { legacyId } }", entityId: $e) { body errors { message } } }"""
    mine = await gql(fixture_pool, preview, Visibility(1), e=to_global_id("Invoice", own))
    foreign = await gql(fixture_pool, preview, Visibility(1), e=to_global_id("Invoice", theirs))
    assert mine["webhookPreview"]["body"]["payload"] == {"data": {"invoice": {"legacyId": own}}}
    assert foreign["webhookPreview"]["body"]["payload"] == {"data": {"invoice": None}}
    bad = await gql(
        fixture_pool,
        'mutation { webhookPreview(type: INVOICE, query: "query { x }", entityId: "SW52b2ljZTox") '
        "{ body errors { field message } } }",
    )
    assert bad["webhookPreview"]["body"] is None and bad["webhookPreview"]["errors"][0]["field"] == "query"
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_replay_enqueues_current_state_for_that_webhook_only(fixture_pool: asyncpg.Pool) -> None:
    # given webhook A with a delivered and a newer pending event for invoice 1, a recent failed
    # deletion of invoice 2, an old event for invoice 3, and a ping; and webhook B of the same type
    # that does not skip identical payloads
    hook, hook_id = await new_webhook(fixture_pool, query=STATUS_QUERY)
    _, other_id = await new_webhook(fixture_pool, query=STATUS_QUERY, skipIdenticalPayloads=False)
    await add_event(fixture_pool, hook_id, 1, "delivered", payload={"data": {"invoice": {"status": "OLD"}}})
    pending = await add_event(fixture_pool, hook_id, 1, "pending", payload={"data": {"invoice": {"status": "X"}}})
    await fixture_pool.execute("DELETE FROM invoices WHERE id = 2")
    await fixture_pool.execute("TRUNCATE changes")
    await add_event(fixture_pool, hook_id, 2, "failed", event="invoice.deleted", age=timedelta(minutes=5))
    await add_event(fixture_pool, hook_id, 3, "delivered", age=timedelta(days=2))
    await add_event(fixture_pool, hook_id, None, "delivered")
    last_sequence = await fixture_pool.fetchval("SELECT last_sequence FROM webhooks WHERE id = $1", hook_id)
    status = await fixture_pool.fetchval("SELECT upper(status) FROM invoices WHERE id = 1")
    # when A is replayed since an hour ago
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    data = await gql(fixture_pool, REPLAY, id=hook, since=since)
    # then one fresh pending event per entity comes, at the current state, with its latest event's name
    assert data["webhookReplay"] == {"queued": 2, "errors": []}
    new = await fixture_pool.fetch(
        "SELECT * FROM webhook_events WHERE webhook_id = $1 AND status = 'pending' ORDER BY entity_id", hook_id
    )
    assert [(r["entity_id"], r["event"], r["payload"]) for r in new] == [
        (1, "invoice.updated", {"data": {"invoice": {"status": status}}}),
        (2, "invoice.deleted", {"data": {"invoice": None}}),
    ]
    assert sorted(r["sequence"] for r in new) == [last_sequence + 1, last_sequence + 2]
    assert all(r["public_id"].startswith("evt_") and r["next_attempt_at"] <= datetime.now(UTC) for r in new)
    # the older pending event is superseded by the replayed one
    old = await fixture_pool.fetchrow("SELECT status, superseded_by FROM webhook_events WHERE id = $1", pending)
    assert (old["status"], old["superseded_by"]) == ("superseded", new[0]["id"])
    # and nobody else hears about it: no events for B, no captured changes
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events WHERE webhook_id = $1", other_id) == 0
    assert await fixture_pool.fetchval("SELECT count(*) FROM changes") == 0
    # a replay with nothing since then queues nothing
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await gql(fixture_pool, REPLAY, id=hook, since=future))["webhookReplay"] == {"queued": 0, "errors": []}


async def test_a_replay_is_delivered_by_the_running_engine(fixture_database_url: str) -> None:
    # given a running engine, a receiver, and two webhooks that heard one change of invoice 1
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as running:
            pool = running.pool
            url = receiver.url + "/hook"
            hook, _ = await new_webhook(pool, url=url, query=STATUS_QUERY)
            await new_webhook(pool, url=url + "/b", query=STATUS_QUERY, skipIdenticalPayloads=False)
            await pool.execute("UPDATE invoices SET status = status WHERE id = 1")
            await receiver.wait_for(2)
            # when the first webhook is replayed
            data = await gql(pool, REPLAY, id=hook, since="2000-01-01T00:00:00Z")
            assert data["webhookReplay"] == {"queued": 1, "errors": []}
            await receiver.wait_for(3)
            await wait_until(
                lambda: pool.fetchval("SELECT count(*) = 0 FROM webhook_events WHERE status = 'pending'")
            )
    finally:
        await receiver.stop()
    # then only it receives the state again, as a new event (a new id) with the same payload
    by_path: dict[str, list[Any]] = {}
    for got in receiver.received:
        by_path.setdefault(got.path, []).append(got.json())
    first, replayed = by_path["/hook"]
    assert len(by_path["/hook/b"]) == 1
    assert replayed["payload"] == first["payload"] and replayed["id"] != first["id"]
    assert replayed["sequence"] > first["sequence"]


async def test_a_replay_enqueues_as_the_engine_does_keeping_the_retry_clock_and_waking_dispatchers(
    fixture_pool: asyncpg.Pool,
) -> None:
    # given a pending event of invoice 1 in a retry backoff (3 attempts made, the next due in 10
    # minutes), and a connection listening for the dispatchers' wake-up
    hook, hook_id = await new_webhook(fixture_pool, query=STATUS_QUERY)
    retrying = await add_event(fixture_pool, hook_id, 1, "pending")
    next_at = await fixture_pool.fetchval(
        "UPDATE webhook_events SET next_attempt_at = now() + interval '10 minutes' WHERE id = $1 "
        "RETURNING next_attempt_at",
        retrying,
    )
    wakeups: asyncio.Queue[str] = asyncio.Queue()
    listener = await fixture_pool.acquire()

    def woken(*args: Any) -> None:
        wakeups.put_nowait(args[3])

    await listener.add_listener("hookql_events", woken)
    try:
        # when a replay with nothing to replay runs, then one over invoice 1
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        nothing = await gql(fixture_pool, REPLAY, id=hook, since=future)
        await fixture_pool.execute("SELECT pg_notify('hookql_events', 'sentinel')")
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        replayed = await gql(fixture_pool, REPLAY, id=hook, since=since)
        # then the empty replay woke nobody (the sentinel is the first wake-up), the real one did
        assert nothing["webhookReplay"] == {"queued": 0, "errors": []}
        assert await asyncio.wait_for(wakeups.get(), 5) == "sentinel"
        assert replayed["webhookReplay"] == {"queued": 1, "errors": []}
        assert await asyncio.wait_for(wakeups.get(), 5) == ""
    finally:
        await listener.remove_listener("hookql_events", woken)
        await fixture_pool.release(listener)
    # and the replayed event supersedes the retrying one and keeps its retry clock, as the
    # producer's events do: a failing receiver is not tried sooner, nor given a fresh budget
    new = await fixture_pool.fetchrow(
        "SELECT id, attempts, next_attempt_at FROM webhook_events WHERE webhook_id = $1 AND status = 'pending'",
        hook_id,
    )
    assert (new["attempts"], new["next_attempt_at"]) == (3, next_at)
    old = await fixture_pool.fetchrow("SELECT status, superseded_by FROM webhook_events WHERE id = $1", retrying)
    assert (old["status"], old["superseded_by"]) == ("superseded", new["id"])
    # the payload replayed is the one later changes are compared with (skip identical payloads)
    stored = await fixture_pool.fetchval(
        "SELECT last_payload_hash FROM webhook_entity_state WHERE webhook_id = $1 AND entity_id = 1", hook_id
    )
    assert stored == await fixture_pool.fetchval("SELECT payload_hash FROM webhook_events WHERE id = $1", new["id"])
