"""Delivery filters end to end: registration checks the filter against the query's selection; a
payload that does not match is SKIPPED ('filtered'), takes no sequence number and is visible in the
event log; a matching one is delivered; filters combine with skip-identical; webhookPreview says
whether the filter matches. (Each operator on payloads: tests/unit/test_filters.py.)"""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.policy.filters import MAX_FILTER_LENGTH
from app.store.apikeys import create_key
from tests.integration.test_api_webhooks import create, gql
from tests.integration.test_api_webhooks_events import REPLAY, STATUS_QUERY, add_event, new_webhook
from tests.integration.test_dashboard import client, sign_in, site
from tests.support.engine_harness import add_webhook, bodies, fast, running_engine, settled, wait_until
from tests.support.live_server import serving
from tests.support.logs import no_tracebacks
from tests.support.receivers import Receiver

QUERY = "query($id: ID!) { node(id: $id) { ... on Invoice { id legacyId status total { amount } } } }"
SHIPPED_OR_CANCELLED = "invoice.status in [SHIPPED, CANCELLED]"
UPDATE = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
  webhook { filter query } errors { field message } } }"""
EVENTS = """query($id: ID!) { webhook(id: $id) { filter events { edges { node {
  status sequence skipReason payload } } } } }"""


async def _event_log(pool: asyncpg.Pool, hook_id: str) -> list[dict[str, Any]]:
    data = await gql(pool, EVENTS, id=hook_id)
    return [e["node"] for e in reversed(data["webhook"]["events"]["edges"])]  # oldest first


async def _skipped(pool: asyncpg.Pool, reason: str) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM webhook_events WHERE skip_reason = $1", reason))


async def test_a_non_matching_update_is_skipped_and_a_matching_one_delivered(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            out = await create(run.pool, url=receiver.url, query=QUERY, filter=SHIPPED_OR_CANCELLED)
            assert out["errors"] == [] and out["webhook"] is not None
            hook = out["webhook"]["id"]
            # when invoice 3 (pending) is paid: not a status the filter lets through
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 3")
            await wait_until(lambda: _skipped(run.pool, "filtered"))
            # and then shipped: delivered
            await run.pool.execute("UPDATE invoices SET status = 'shipped' WHERE id = 3")
            [got] = await receiver.wait_for(1)
            await wait_until(lambda: settled(run.pool))
            log = await _event_log(run.pool, hook)
    finally:
        await receiver.stop()
    # then the receiver heard of the shipped state only, as the webhook's first sequence number
    [body] = bodies([got])
    assert body["payload"]["data"]["node"]["status"] == "SHIPPED" and body["sequence"] == 1
    # and the event log shows the filtered one: skipped, no sequence number, its payload kept
    assert [(e["status"], e["sequence"], e["skipReason"]) for e in log] == [
        ("SKIPPED", None, "filtered"),
        ("DELIVERED", 1, None),
    ]
    assert log[0]["payload"]["data"]["node"]["status"] == "PAID"


async def test_filters_apply_before_skip_identical_and_leave_its_hash_alone(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            out = await create(run.pool, url=receiver.url, query=QUERY, filter="invoice.status != PAID")
            hook = out["webhook"]["id"]
            await run.pool.execute("UPDATE invoices SET status = 'shipped' WHERE id = 3")
            await receiver.wait_for(1)
            await wait_until(lambda: settled(run.pool))
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 3")
            await wait_until(lambda: _skipped(run.pool, "filtered"))
            # back to the state the receiver was last sent: identical to it, so skipped as such
            await run.pool.execute("UPDATE invoices SET status = 'shipped' WHERE id = 3")
            await wait_until(lambda: _skipped(run.pool, "identical"))
            await wait_until(lambda: settled(run.pool))
            log = await _event_log(run.pool, hook)
    finally:
        await receiver.stop()
    assert [(e["status"], e["sequence"], e["skipReason"]) for e in log] == [
        ("DELIVERED", 1, None),
        ("SKIPPED", None, "filtered"),
        ("SKIPPED", 2, "identical"),
    ]
    assert len(receiver.received) == 1


async def test_a_filtered_payload_leaves_a_pending_retry_and_the_sequence_alone(fixture_database_url: str) -> None:
    # given a receiver that answers 500, so the shipped state waits for its retry (a minute away)
    receiver = await Receiver(respond=lambda n: (500, {}, b"")).start()
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=60_000, retry_max_ms=60_000)) as run:
            out = await create(run.pool, url=receiver.url, query=QUERY, filter=SHIPPED_OR_CANCELLED)
            hook = out["webhook"]["id"]
            await run.pool.execute("UPDATE invoices SET status = 'shipped' WHERE id = 3")
            await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT count(*) FROM webhook_events WHERE attempts = 1"))
            # when the invoice moves to a state the filter does not let through
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 3")
            await wait_until(lambda: _skipped(run.pool, "filtered"))
            log = await _event_log(run.pool, hook)
            last_sequence = await run.pool.fetchval("SELECT last_sequence FROM webhooks")
            kept_hash = await run.pool.fetchval("SELECT last_payload_hash FROM webhook_entity_state")
            pending_hash = await run.pool.fetchval("SELECT payload_hash FROM webhook_events WHERE sequence = 1")
    finally:
        await receiver.stop()
    # then the shipped state is still pending its retry: the filtered one superseded nothing,
    # took no sequence number and left the skip-identical hash that of the shipped state
    assert [(e["status"], e["sequence"], e["skipReason"]) for e in log] == [
        ("PENDING", 1, None),
        ("SKIPPED", None, "filtered"),
    ]
    assert last_sequence == 1
    assert kept_hash == pending_hash


async def test_a_filter_on_an_owned_row_re_evaluates_the_owner(fixture_database_url: str) -> None:
    # invoice 1 has line items; a filter over them sees a change to one of them
    query = "query($id: ID!) { invoice(id: $id) { legacyId lineItems { legacyId status } } }"
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            out = await create(run.pool, url=receiver.url, query=query, filter="invoice.lineItems.status == CANCELLED")
            assert out["errors"] == []
            line = await run.pool.fetchval("SELECT min(id) FROM invoice_line_items WHERE invoice_id = 1")
            await run.pool.execute("UPDATE invoice_line_items SET quantity = quantity + 1 WHERE id = $1", line)
            await wait_until(lambda: _skipped(run.pool, "filtered"))
            await run.pool.execute("UPDATE invoice_line_items SET status = 'cancelled' WHERE id = $1", line)
            [got] = await receiver.wait_for(1)
    finally:
        await receiver.stop()
    assert {"legacyId": line, "status": "CANCELLED"} in got.json()["payload"]["data"]["invoice"]["lineItems"]


async def test_a_registration_naming_an_unknown_path_is_refused(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, query=QUERY, filter="invoice.status == SHIPPED and invoice.trackingLink exists")
    assert out["webhook"] is None
    [error] = out["errors"]
    assert error["field"] == "filter" and "`invoice.trackingLink`" in error["message"]
    assert "the query does not select" in error["message"]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_a_new_query_must_still_select_the_stored_filters_paths(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, query=QUERY, filter=SHIPPED_OR_CANCELLED)
    hook = out["webhook"]["id"]
    narrower = "query($id: ID!) { node(id: $id) { ... on Invoice { id } } }"
    data = await gql(fixture_pool, UPDATE, id=hook, input={"query": narrower})
    [error] = data["webhookUpdate"]["errors"]
    assert error["field"] == "filter" and error["message"].startswith("the stored filter no longer fits the query")
    assert await fixture_pool.fetchval("SELECT query FROM webhooks") == QUERY
    # with the filter removed at the same time, it is accepted
    data = await gql(fixture_pool, UPDATE, id=hook, input={"query": narrower, "filter": ""})
    assert data["webhookUpdate"] == {"webhook": {"filter": None, "query": narrower}, "errors": []}


async def test_aliases_and_the_root_fields_name_are_paths_too(fixture_pool: asyncpg.Pool) -> None:
    query = "query($id: ID!) { inv: invoice(id: $id) { state: status total { cents: amount } } }"
    for text in ("inv.state == PAID", "invoice.state == PAID and invoice.total.cents > 10"):
        out = await create(fixture_pool, query=query, filter=text)
        assert out["errors"] == [], (text, out["errors"])
    out = await create(fixture_pool, query=query, filter="invoice.status == PAID")
    assert "`invoice.status`" in out["errors"][0]["message"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x" * (MAX_FILTER_LENGTH + 1), f"filter is longer than {MAX_FILTER_LENGTH} characters"),
        ("invoice.status ==", "filter: expected a value"),
        ("not " * 100 + "invoice.status exists", "levels deep"),
        ("invoice.status == 'a\x00'", "filter must not contain NUL characters"),
        ("invoice.status == '\ud800'", "filter is not valid Unicode"),
        ("invoice.status == A" + " or invoice.status == A" * 70, "more than 64 comparisons"),
    ],
)
async def test_hostile_filters_are_refused_changing_nothing(
    fixture_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, text: str, message: str
) -> None:
    existing = await create(fixture_pool, query=QUERY, filter=SHIPPED_OR_CANCELLED)
    before = await fixture_pool.fetchrow("SELECT * FROM webhooks")
    with no_tracebacks(caplog):
        created = await create(fixture_pool, query=QUERY, filter=text)
        updated = await gql(fixture_pool, UPDATE, id=existing["webhook"]["id"], input={"filter": text})
    for errors in (created["errors"], updated["webhookUpdate"]["errors"]):
        [error] = errors
        assert error["field"] == "filter" and message in error["message"], error
    assert await fixture_pool.fetchrow("SELECT * FROM webhooks") == before
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 1


PREVIEW = """mutation($q: String!, $id: ID!, $filter: String) {
  webhookPreview(type: INVOICE, query: $q, entityId: $id, filter: $filter) {
    body filterMatches errors { field message } } }"""


async def test_preview_says_whether_the_filter_matches(fixture_pool: asyncpg.Pool) -> None:
    invoice_1 = "SW52b2ljZTox"  # paid
    data = await gql(fixture_pool, PREVIEW, q=QUERY, id=invoice_1, filter="invoice.status == PAID")
    assert data["webhookPreview"]["filterMatches"] is True and data["webhookPreview"]["errors"] == []
    data = await gql(fixture_pool, PREVIEW, q=QUERY, id=invoice_1, filter=SHIPPED_OR_CANCELLED)
    assert data["webhookPreview"]["filterMatches"] is False and data["webhookPreview"]["body"] is not None
    data = await gql(fixture_pool, PREVIEW, q=QUERY, id=invoice_1, filter=None)
    assert data["webhookPreview"]["filterMatches"] is None
    data = await gql(fixture_pool, PREVIEW, q=QUERY, id=invoice_1, filter="invoice.nope exists")
    assert data["webhookPreview"]["body"] is None and data["webhookPreview"]["errors"][0]["field"] == "filter"


async def test_a_replay_sends_only_the_entities_whose_current_state_matches(fixture_pool: asyncpg.Pool) -> None:
    # given a webhook for paid invoices with past events for invoice 1 (paid) and 2 (pending)
    hook, hook_id = await new_webhook(fixture_pool, query=STATUS_QUERY, filter="invoice.status == PAID")
    for entity_id in (1, 2):
        await add_event(fixture_pool, hook_id, entity_id, "delivered")
    # when it is replayed
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    data = await gql(fixture_pool, REPLAY, id=hook, since=since)
    # then only invoice 1 is queued
    assert data["webhookReplay"] == {"queued": 1, "errors": []}
    pending = await fixture_pool.fetch("SELECT entity_id FROM webhook_events WHERE status = 'pending'")
    assert [r["entity_id"] for r in pending] == [1]


async def test_the_dashboard_shows_a_filtered_event_without_a_sequence(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        hook, _ = await add_webhook(pool, "https://erp.example.com/h", filter=SHIPPED_OR_CANCELLED)
        await conn.execute(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,"
            " skip_reason, payload, payload_hash, changed_at, finished_at) VALUES"
            " ('evt_filtered', $1, 'invoice', 7, 'invoice.updated', NULL, 'skipped', 'filtered', '{}', '\\x00',"
            " now(), now()), ('evt_same', $1, 'invoice', 8, 'invoice.updated', 3, 'skipped', 'identical', '{}',"
            " '\\x00', now(), now())",
            hook,
        )
        key = await create_key(conn, seller_id=None, name="ops")
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        async with http.get(f"{base_url}/dashboard/webhooks/{hook}") as response:
            page = await response.text()
    assert response.status == 200
    assert "filtered · evt_filtered" in page and "seq 3 · identical · evt_same" in page
    assert "seq None" not in page
