"""`hookql listen`'s GraphQL, in-process: holding a webhook, the claim that hands its events to the
listener (and keeps them from the dispatcher), and the reported answers — including hostile ones."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.listen_deliveries import claim_deliveries
from app.api.schema import schema
from app.config import Settings
from app.store import delivery, enqueue
from app.store import listen as listen_store
from app.types import OPERATOR, Visibility
from tests.support.logs import no_tracebacks

SETTINGS = Settings(allow_private_targets=False, retry_base_ms=1000, retry_max_ms=1000)
LISTEN = """mutation($input: WebhookListenInput!) { webhookListen(input: $input) {
  webhook { id legacyId url listening temporary } secret listenUntil renewEverySeconds errors { field message } } }"""
REPORT = """mutation($input: WebhookListenReportInput!) { webhookListenReport(input: $input) {
  event { status attemptCount nextAttemptAt } errors { field message } } }"""
TEST = "mutation($id: ID!) { webhookTest(id: $id) { event { id status } attempt { id } errors { message } } }"
STOP = "mutation($id: ID!) { webhookListenStop(webhookId: $id) { deleted errors { field message } } }"
CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) { webhook { id legacyId }
  errors { message } } }"""


async def gql(pool: asyncpg.Pool, query: str, visibility: Visibility = OPERATOR, **variables: Any) -> dict[str, Any]:
    context = make_context(pool, visibility, SETTINGS)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


async def temporary(pool: asyncpg.Pool, visibility: Visibility = OPERATOR) -> dict[str, Any]:
    held = (await gql(pool, LISTEN, visibility, input={"forwardTo": "http://localhost:3000/hooks", "type": "INVOICE"}))
    assert held["webhookListen"]["errors"] == []
    return held["webhookListen"]  # type: ignore[no-any-return]


async def pinged(pool: asyncpg.Pool, hook: dict[str, Any]) -> dict[str, Any]:
    """A ping through the listener: queued by webhookTest, then claimed as the listener's subscription does."""
    tested = (await gql(pool, TEST, id=hook["id"]))["webhookTest"]
    assert tested["attempt"] is None and tested["event"]["status"] == "PENDING"
    [delivery] = await claim_deliveries(pool, SETTINGS, hook["legacyId"])
    return {"id": to_global_id("WebhookEvent", delivery.event_pk), "delivery": delivery}


async def state(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT id, status, attempts, leased_until IS NOT NULL AS leased FROM webhook_events ORDER BY id"
    )
    attempts = await pool.fetch("SELECT event_id, status_code, error FROM webhook_attempts ORDER BY id")
    return [tuple(r) for r in rows] + [tuple(a) for a in attempts]


async def test_a_temporary_webhook_takes_a_local_url_the_server_would_refuse(pool: asyncpg.Pool) -> None:
    held = await temporary(pool)
    hook = held["webhook"]
    assert held["secret"].startswith("whsec_") and held["renewEverySeconds"] == SETTINGS.listen_lease_s / 3
    assert (hook["url"], hook["listening"], hook["temporary"]) == ("http://localhost:3000/hooks", True, True)
    refused = await gql(pool, CREATE, input={"name": "x", "url": "http://localhost:3000/hooks", "type": "INVOICE"})
    assert refused["webhookCreate"]["errors"]  # as a webhook of its own, the same URL is refused


async def test_the_delivery_is_the_signed_request_and_the_reported_answer_is_the_attempt(pool: asyncpg.Pool) -> None:
    hook = (await temporary(pool))["webhook"]
    event = await pinged(pool, hook)
    d = event["delivery"]
    assert d.method == "POST" and d.headers["webhook-id"] == d.public_id
    assert d.headers["webhook-signature"].startswith("v1,")
    assert await claim_deliveries(pool, SETTINGS, hook["legacyId"]) == []  # leased: not handed out twice

    failed = (await gql(pool, REPORT, input={"eventId": event["id"], "durationMs": 12, "statusCode": 500}))
    assert failed["webhookListenReport"]["event"]["status"] == "PENDING"  # retried as usual
    assert failed["webhookListenReport"]["event"]["nextAttemptAt"] is not None
    again = (await gql(pool, REPORT, input={"eventId": event["id"], "durationMs": 12, "statusCode": 200}))
    assert "not awaiting" in again["webhookListenReport"]["errors"][0]["message"]  # its lease went with the report

    await pool.execute("UPDATE webhook_events SET next_attempt_at = now()")
    [retry] = await claim_deliveries(pool, SETTINGS, hook["legacyId"])
    assert retry.attempt == 2
    ok = await gql(pool, REPORT, input={"eventId": event["id"], "durationMs": 3, "statusCode": 204,
                                        "responseHeaders": {"X-A": "b"}, "responseBody": "y" * 100_000})
    assert ok["webhookListenReport"]["event"]["status"] == "DELIVERED"
    [first, second] = await pool.fetch(
        "SELECT status_code, length(response_body) AS n FROM webhook_attempts ORDER BY id"
    )
    assert (first["status_code"], second["status_code"], second["n"]) == (500, 204, 4096)


async def test_a_held_webhooks_events_are_not_claimed_or_handed_off_for_http(pool: asyncpg.Pool) -> None:
    created = (await gql(pool, CREATE, input={"name": "ERP", "url": "https://93.184.216.34/", "type": "INVOICE"}))
    hook = created["webhookCreate"]["webhook"]
    held = await gql(pool, LISTEN, input={"forwardTo": "http://localhost:1/", "webhookId": hook["id"]})
    assert held["webhookListen"]["secret"] is None  # an existing webhook's secret stays unreadable
    await gql(pool, TEST, id=hook["id"])  # a pending ping, due now
    async with pool.acquire() as conn:
        assert await delivery.claim_events(conn, 100, 20.0, 5000, [], 25, 1000) == []
        [handoff] = (await enqueue.prepare_enqueue(conn, [], [hook["legacyId"]], [])).webhooks
        assert not handoff.enabled
        released = await listen_store.release_hold(conn, hook["legacyId"])
        assert (released.deleted, released.released) == (False, True)
        [claimed] = await delivery.claim_events(conn, 100, 20.0, 5000, [], 25, 1000)  # HTTP delivery again
    assert claimed.webhook_id == hook["legacyId"]


async def test_a_lapsed_hold_is_swept(pool: asyncpg.Pool) -> None:
    hook = (await temporary(pool))["webhook"]
    await pool.execute("UPDATE webhooks SET listen_until = now() - interval '1 second'")
    async with pool.acquire() as conn:
        swept = await listen_store.sweep_lapsed(conn)
    assert (swept.deleted, swept.released) == (1, 0)
    assert await pool.fetch("SELECT 1 FROM webhooks WHERE id = $1", hook["legacyId"]) == []


# --- hostile -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"forwardTo": "javascript:alert(1)", "type": "INVOICE"}, "forwardTo"),
        ({"forwardTo": "http://x/" + "a" * 3000, "type": "INVOICE"}, "forwardTo"),
        ({"forwardTo": "http://localhost/\0", "type": "INVOICE"}, "forwardTo"),
        ({"forwardTo": "http://localhost/"}, "type"),
        ({"forwardTo": "http://localhost/", "type": "INVOICE", "webhookId": "V2ViaG9vazox"}, "webhookId"),
        ({"forwardTo": "http://localhost/", "type": "INVOICE", "query": "{ nope"}, "query"),
        ({"forwardTo": "http://localhost/", "type": "INVOICE", "timeoutSeconds": 99}, "timeoutSeconds"),
        ({"forwardTo": "http://localhost/", "webhookId": "not-an-id"}, "webhookId"),
    ],
)
async def test_bad_listen_inputs_change_nothing(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, given: dict[str, Any], field: str
) -> None:
    with no_tracebacks(caplog):
        out = (await gql(pool, LISTEN, input=given))["webhookListen"]
    assert out["webhook"] is None and [e["field"] for e in out["errors"]][:1] == [field], out
    assert await pool.fetch("SELECT 1 FROM webhooks") == []


async def test_another_sellers_webhook_and_events_are_as_missing_as_none(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await pool.execute("INSERT INTO sellers (id, name) VALUES (1, 'One'), (2, 'Two') ON CONFLICT DO NOTHING")
    theirs = (await temporary(pool, Visibility(2)))["webhook"]
    event = await pinged(pool, theirs)
    before = await state(pool)
    me = Visibility(1)
    with no_tracebacks(caplog):
        attach = (await gql(pool, LISTEN, me, input={"forwardTo": "http://localhost/", "webhookId": theirs["id"]}))
        report = await gql(pool, REPORT, me, input={"eventId": event["id"], "durationMs": 1, "statusCode": 200})
        stop = await gql(pool, STOP, me, id=theirs["id"])
        renew = await gql(pool, "mutation($id: ID!) { webhookListenRenew(webhookId: $id) { errors { message } } }",
                          me, id=theirs["id"])
    assert attach["webhookListen"]["errors"][0]["message"] == "webhook not found"
    assert report["webhookListenReport"]["errors"][0]["message"] == "event not found"
    assert stop["webhookListenStop"]["errors"][0]["message"] == "webhook not found"
    assert renew["webhookListenRenew"]["errors"][0]["message"] == "webhook not found"
    assert await state(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM webhooks WHERE listen_only") == 1


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"statusCode": 999}, "statusCode"),
        ({}, "error"),
        ({"statusCode": 200, "durationMs": -5}, "durationMs"),
        ({"statusCode": 200, "responseHeaders": ["not", "an", "object"]}, "responseHeaders"),
        ({"statusCode": 200, "responseHeaders": {"a": 1}}, "responseHeaders"),
        ({"statusCode": 200, "responseBody": "a\0b"}, "responseBody"),
        ({"error": "x" * 200_000}, "error"),
    ],
)
async def test_malformed_reports_change_nothing(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, report: dict[str, Any], field: str
) -> None:
    hook = (await temporary(pool))["webhook"]
    event = await pinged(pool, hook)
    before = await state(pool)
    with no_tracebacks(caplog):
        given = {"eventId": event["id"], "durationMs": 1, **report}
        out = (await gql(pool, REPORT, input=given))["webhookListenReport"]
    assert out["event"] is None and out["errors"][0]["field"] == field, out
    assert await state(pool) == before
