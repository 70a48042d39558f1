"""Registering webhooks: validation (every rule, nothing stored on failure), ownership, secrets,
test pings in every format, preview, and the event log."""

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import pytest
from standardwebhooks import Webhook

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.config import Settings
from app.models import OPERATOR, Visibility
from app.transport import Transport
from tests.receivers import Receiver

LOCAL = Settings(allow_private_targets=True)
STRICT = Settings(allow_private_targets=False)
CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) {
  webhook { id name url type subscribedEvents method format enabled skipIdenticalPayloads maxAttempts
            timeoutSeconds concurrency query headers { name value } sellerId }
  secret errors { field message } } }"""
VALID = {"name": "ERP", "url": "https://erp.example.com/hooks", "type": "INVOICE"}


async def gql(
    pool: asyncpg.Pool,
    query: str,
    visibility: Visibility = OPERATOR,
    settings: Settings = LOCAL,
    transport: Transport | None = None,
    **variables: Any,
) -> dict[str, Any]:
    context = make_context(pool, visibility, settings, transport=transport)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


async def create(
    pool: asyncpg.Pool, visibility: Visibility = OPERATOR, settings: Settings = LOCAL, **fields: Any
) -> dict[str, Any]:
    data = await gql(pool, CREATE, visibility, settings, input={**VALID, **fields})
    return data["webhookCreate"]  # type: ignore[no-any-return]


async def test_create_applies_the_documented_defaults(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool)
    assert out["errors"] == [] and out["secret"].startswith("whsec_")
    hook = out["webhook"]
    assert (hook["method"], hook["format"], hook["enabled"], hook["skipIdenticalPayloads"]) == (
        "POST",
        "JSON",
        True,
        True,
    )
    assert (hook["maxAttempts"], hook["timeoutSeconds"], hook["concurrency"]) == (20, 15, 10)
    assert hook["subscribedEvents"] == ["CREATED", "UPDATED", "DELETED"]
    assert hook["query"] == "query($id: ID!) { node(id: $id) { __typename id } }"
    assert hook["sellerId"] is None


DEEP = "query($id: ID!) { invoice(id: $id) { " + "order { invoices { " * 5 + "id" + " } }" * 5 + " } }"
WIDE = (
    "fragment F on Invoice { " + " ".join(f"a{i}: status" for i in range(260)) + " } "
    "query($id: ID!) { invoice(id: $id) { ...F b: order { invoices { ...F } } } }"
)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"query": "query { "}, "query", "does not parse"),
        (
            {"query": "query A($id: ID!) { invoice(id: $id) { id } } query B($id: ID!) { invoice(id: $id) { id } }"},
            "query",
            "exactly one operation",
        ),
        ({"query": "mutation($id: ID!) { webhookDelete(id: $id) { deletedId } }"}, "query", "must be a query"),
        ({"query": "query($id: ID!, $x: Int) { invoice(id: $id) { id } }"}, "query", "only variable allowed"),
        ({"query": "query($id: String!) { invoice(id: $id) { id } }"}, "query", "only variable allowed"),
        ({"query": "query($id: ID!) { invoice(id: $id) { nope } }"}, "query", "not valid against the schema"),
        (
            {"query": "query($id: ID!) { node(id: $id) { ... on Variant { sku } } }"},
            "query",
            "webhook's type is Invoice",
        ),
        ({"query": "query($id: ID!) { invoice(id: $id) { id } webhooks { id } }"}, "query", "at the top level"),
        ({"query": "query($id: ID!) { variant(id: $id) { id } }"}, "query", "at the top level"),
        ({"query": DEEP}, "query", "levels deep"),
        ({"query": WIDE}, "query", "fields after fragment expansion"),
        ({"url": "ftp://erp.example.com/x"}, "url", "http or https"),
        ({"url": "https://erp.example.com/" + "x" * 2100}, "url", "longer than 2048"),
        ({"url": "http://10.0.0.5/hook"}, "url", "private"),
        ({"url": "http://169.254.169.254/latest"}, "url", "metadata"),
        ({"url": "http://localhost:8080/hook"}, "url", "resolves to 127.0.0.1"),
        ({"headers": [{"name": f"X-{i}", "value": "v"} for i in range(21)]}, "headers", "at most 20"),
        ({"headers": [{"name": "Bad Name", "value": "v"}]}, "headers.0.name", "not a valid HTTP token"),
        ({"headers": [{"name": "X-A", "value": "a\r\nX-Injected: 1"}]}, "headers.0.value", "CR, LF or NUL"),
        ({"headers": [{"name": "X-Big", "value": "v" * 9000}]}, "headers", "8192 bytes"),
        ({"headers": [{"name": "content-type", "value": "text/plain"}]}, "headers.0.name", "cannot be overridden"),
        ({"headers": [{"name": "Webhook-Signature", "value": "x"}]}, "headers.0.name", "cannot be overridden"),
        ({"maxAttempts": 0}, "maxAttempts", "between 1 and 50"),
        ({"maxAttempts": 51}, "maxAttempts", "between 1 and 50"),
        ({"timeoutSeconds": 31}, "timeoutSeconds", "between 1 and 30"),
        ({"concurrency": 0}, "concurrency", "between 1 and 100"),
        ({"events": []}, "events", "at least one"),
        ({"name": " "}, "name", "1-200 characters"),
        ({"sellerId": "U2VsbGVyOjk5OQ=="}, "sellerId", "does not exist"),
    ],
)
async def test_each_rule_refuses_with_a_clear_message_and_stores_nothing(
    fixture_pool: asyncpg.Pool, fields: dict[str, Any], field: str, message: str
) -> None:
    out = await create(fixture_pool, settings=STRICT, **fields)
    assert out["webhook"] is None and out["secret"] is None
    assert any(e["field"] == field and message in e["message"] for e in out["errors"]), out["errors"]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_userinfo_and_query_strings_are_kept(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, settings=STRICT, url="https://u:pw@erp.example.com/h?token=1")
    assert out["errors"] == [] and out["webhook"]["url"] == "https://u:pw@erp.example.com/h?token=1"


async def test_a_seller_cannot_choose_another_owner(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, Visibility(1), sellerId=to_global_id("Seller", 2))
    assert out["errors"][0]["field"] == "sellerId"
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0
    own = await create(fixture_pool, Visibility(1))
    assert own["webhook"]["sellerId"] == to_global_id("Seller", 1)


async def test_update_is_partial_and_validated(fixture_pool: asyncpg.Pool) -> None:
    hook = (
        await create(
            fixture_pool,
            headers=[{"name": "X-A", "value": "1"}],
            query="query($id: ID!) { invoice(id: $id) { status } }",
        )
    )["webhook"]
    update = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
      webhook { name url maxAttempts headers { name } } errors { field message } } }"""
    data = await gql(fixture_pool, update, id=hook["id"], input={"maxAttempts": 5})
    assert data["webhookUpdate"]["webhook"] == {
        "name": "ERP",
        "url": VALID["url"],
        "maxAttempts": 5,
        "headers": [{"name": "X-A"}],
    }
    data = await gql(fixture_pool, update, id=hook["id"], input={"type": "VARIANT"})  # stored query selects Invoice
    assert data["webhookUpdate"]["errors"][0]["field"] == "query"
    assert await fixture_pool.fetchval("SELECT entity_type FROM webhooks") == "invoice"


async def test_another_sellers_webhook_is_not_found_everywhere(fixture_pool: asyncpg.Pool) -> None:
    hook = (await create(fixture_pool, Visibility(2)))["webhook"]
    other = Visibility(1)
    data = await gql(fixture_pool, "query($id: ID!) { webhook(id: $id) { id } webhooks { id } }", other, id=hook["id"])
    assert data == {"webhook": None, "webhooks": []}
    for mutation in (
        "webhookDelete(id: $id) { errors { message } }",
        "webhookRotateSecret(id: $id) { errors { message } }",
        "webhookTest(id: $id) { errors { message } }",
        'webhookUpdate(id: $id, input: {name: "x"}) { errors { message } }',
        'webhookReplay(webhookId: $id, since: "2026-01-01T00:00:00Z") { errors { message } }',
    ):
        data = await gql(fixture_pool, f"mutation($id: ID!) {{ {mutation} }}", other, id=hook["id"])
        assert next(iter(data.values()))["errors"][0]["message"] == "webhook not found"
    assert await fixture_pool.fetchval("SELECT name FROM webhooks") == "ERP"


@pytest.mark.parametrize(("fmt", "method"), [("JSON", "POST"), ("XML", "POST"), ("FORM", "POST"), ("JSON", "PUT")])
async def test_ping_is_signed_and_shaped_by_the_webhook(fixture_pool: asyncpg.Pool, fmt: str, method: str) -> None:
    receiver = await Receiver().start()
    try:
        async with Transport() as transport:
            out = await create(
                fixture_pool,
                url=receiver.url + "/hook",
                format=fmt,
                method=method,
                headers=[{"name": "X-Tenant", "value": "acme"}],
            )
            data = await gql(
                fixture_pool,
                "mutation($id: ID!) { webhookTest(id: $id) { event { event status eventId } "
                "attempt { statusCode } errors { message } } }",
                transport=transport,
                id=out["webhook"]["id"],
            )
    finally:
        await receiver.stop()
    result = data["webhookTest"]
    assert result["attempt"]["statusCode"] == 200 and result["event"]["status"] == "DELIVERED"
    [got] = receiver.received
    assert got.method == method and got.headers["X-Tenant"] == "acme"
    assert got.headers["webhook-id"] == result["event"]["eventId"] == got.headers["Idempotency-Key"]
    assert got.headers["User-Agent"].startswith("hookql/") and "Webhook-Sequence" in got.headers
    Webhook(out["secret"]).verify(got.body, got.headers, json_parse=False)
    if fmt == "JSON":
        assert got.json()["event"] == "ping"
    elif fmt == "XML":
        assert b"<event>ping</event>" in got.body
    else:
        assert parse_qs(got.body.decode())["event"] == ["ping"]


async def test_a_failed_ping_disables_the_webhook(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver(respond=lambda n: (500, {}, b"nope")).start()
    try:
        out = await create(fixture_pool, url=receiver.url)
        data = await gql(
            fixture_pool,
            "mutation($id: ID!) { webhookTest(id: $id) { attempt { statusCode responseBody } } }",
            id=out["webhook"]["id"],
        )
    finally:
        await receiver.stop()
    assert data["webhookTest"]["attempt"] == {"statusCode": 500, "responseBody": "nope"}
    row = await fixture_pool.fetchrow("SELECT enabled, disabled_reason FROM webhooks")
    assert (row["enabled"], row["disabled_reason"]) == (False, "test failed")


async def test_rotation_signs_with_both_secrets_for_the_overlap_only(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    ping = "mutation($id: ID!) { webhookTest(id: $id) { attempt { statusCode } } }"
    try:
        out = await create(fixture_pool, url=receiver.url)
        hook_id, old = out["webhook"]["id"], out["secret"]
        rotated = await gql(fixture_pool, "mutation($id: ID!) { webhookRotateSecret(id: $id) { secret } }", id=hook_id)
        new = rotated["webhookRotateSecret"]["secret"]
        await gql(fixture_pool, ping, id=hook_id)
        await fixture_pool.execute("UPDATE webhooks SET previous_secret_expires_at = now() - interval '1 second'")
        await gql(fixture_pool, ping, id=hook_id)
    finally:
        await receiver.stop()
    during, after = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(during.body, during.headers)
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(old).verify(after.body, after.headers)
    assert new != old and "secret" not in str(await gql(fixture_pool, "{ webhooks { name } }"))


async def test_preview_returns_the_body_and_sends_nothing(fixture_pool: asyncpg.Pool) -> None:
    preview = """mutation($q: String!, $e: ID!) { webhookPreview(type: INVOICE, query: $q, entityId: $e) {
      body errors { field message } } }"""
    q = "query($id: ID!) { invoice(id: $id) { status } }"
    data = await gql(fixture_pool, preview, q=q, e=to_global_id("Invoice", 1))
    body = data["webhookPreview"]["body"]
    assert body["event"] == "invoice.updated" and body["entity"] == {"type": "Invoice", "id": "SW52b2ljZTox"}
    assert body["payload"] == {"data": {"invoice": {"status": "PAID"}}}
    foreign = await gql(fixture_pool, preview, Visibility(1), q=q, e=to_global_id("Invoice", 1))  # seller 3's
    assert foreign["webhookPreview"]["body"]["payload"] == {"data": {"invoice": None}}
    wrong = await gql(fixture_pool, preview, q=q, e=to_global_id("Variant", 1))
    assert wrong["webhookPreview"]["errors"][0]["field"] == "entityId"
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_event_log_retry_and_cancel(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool)
    hook = int(await fixture_pool.fetchval("SELECT id FROM webhooks"))
    for n, status in enumerate(["failed", "pending"], start=1):
        await fixture_pool.execute(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status, "
            "payload, payload_hash, changed_at) "
            "VALUES ($1, $2, 'invoice', $3, 'invoice.updated', $3, $4, '{}', '\\x00', $5)",
            f"evt_{n}",
            hook,
            n,
            status,
            datetime.now(UTC),
        )
    ids = {
        r["status"]: to_global_id("WebhookEvent", r["id"])
        for r in await fixture_pool.fetch("SELECT id, status FROM webhook_events")
    }
    log = await gql(
        fixture_pool,
        "query($id: ID!) { webhook(id: $id) { events(status: FAILED, first: 5) { "
        "edges { node { eventId status attempts { statusCode } } } } } }",
        id=out["webhook"]["id"],
    )
    assert log["webhook"]["events"]["edges"] == [{"node": {"eventId": "evt_1", "status": "FAILED", "attempts": []}}]
    retried = await gql(
        fixture_pool,
        "mutation($id: ID!) { webhookEventRetry(id: $id) { event { status } errors { message } } }",
        id=ids["failed"],
    )
    assert retried["webhookEventRetry"] == {"event": {"status": "PENDING"}, "errors": []}
    cancelled = await gql(
        fixture_pool, "mutation($id: ID!) { webhookEventCancel(id: $id) { event { status } } }", id=ids["pending"]
    )
    assert cancelled["webhookEventCancel"]["event"]["status"] == "CANCELLED"
    again = await gql(
        fixture_pool, "mutation($id: ID!) { webhookEventCancel(id: $id) { errors { message } } }", id=ids["pending"]
    )
    assert "only pending" in again["webhookEventCancel"]["errors"][0]["message"]
    hidden = await gql(
        fixture_pool, "query($id: ID!) { webhookEvent(id: $id) { id } }", Visibility(1), id=ids["failed"]
    )
    assert hidden == {"webhookEvent": None}


async def test_a_webhook_deleted_while_its_ping_is_in_flight_is_not_found(fixture_pool: asyncpg.Pool) -> None:
    # given a slow receiver and a ping on its way to it
    receiver = await Receiver(delay_s=0.5).start()
    try:
        out = await create(fixture_pool, url=receiver.url)
        test = "mutation($id: ID!) { webhookTest(id: $id) { errors { message } } }"
        ping = asyncio.create_task(gql(fixture_pool, test, id=out["webhook"]["id"]))
        await receiver.wait_for(1)
        # when the webhook is deleted meanwhile
        await fixture_pool.execute("DELETE FROM webhooks")
        data = await ping
    finally:
        await receiver.stop()
    # then the test answers "not found" (no error escapes) and records nothing
    assert data["webhookTest"]["errors"] == [{"message": "webhook not found"}]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 0
