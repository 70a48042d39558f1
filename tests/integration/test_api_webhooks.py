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
from app.store import db
from app.transport.http import Transport
from app.types import OPERATOR, Visibility
from tests.support.receivers import Receiver

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
        ({"headers": [{"name": "X-A", "value": "a\r\nX-Injected: 1"}]}, "headers.0.value", "CR, LF, NUL"),
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
        (
            {"url": "https://u:pw@erp.example.com/h", "headers": [{"name": "authorization", "value": "Basic x"}]},
            "url",
            "keep one of them",
        ),
        # hostile edges: each a field error, nothing stored (and, in-process, nothing raised)
        ({"headers": [{"name": "X-A\n", "value": "v"}]}, "headers.0.name", "not a valid HTTP token"),
        ({"headers": [{"name": "Host\n", "value": "v"}]}, "headers.0.name", "not a valid HTTP token"),
        ({"headers": [{"name": "Upgrade", "value": "h2c"}]}, "headers.0.name", "controls the connection"),
        ({"url": "http://127.0.0.1:9\\@93.184.216.34/"}, "url", "backslash"),
        ({"url": "http://[::1/"}, "url", "URL is malformed: Invalid IPv6 URL"),
        ({"name": "a\0b"}, "name", "name must not contain NUL characters"),
        ({"url": "https://erp.example.com/\0"}, "url", "url must not contain NUL characters"),
        ({"query": "query($id: ID!) { node(id: $id) { id } } # \0"}, "query", "NUL"),
        ({"headers": [{"name": "X\0", "value": "v"}]}, "headers.0.name", "NUL"),
        ({"headers": [{"name": "X-A", "value": "\0"}]}, "headers.0.value", "NUL"),
        ({"name": "a\ud800"}, "name", "name is not valid Unicode (it contains a lone surrogate)"),
        ({"url": "https://erp.example.com/\udfff"}, "url", "not valid Unicode"),
        ({"query": 'query($id: ID!) { node(id: $id) { id } } # \ud800'}, "query", "not valid Unicode"),
        ({"headers": [{"name": "X-A", "value": "a\ud800"}]}, "headers.0.value", "not valid Unicode"),
        ({"sellerId": "\ud800"}, "sellerId", "not valid Unicode"),
        ({"name": "n" * 100_001}, "name", "longer than 100000 characters"),
        ({"query": "#" * 100_001}, "query", "longer than 100000 characters"),
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
      body fallbackReason errors { field message } } }"""
    q = "query($id: ID!) { invoice(id: $id) { status } }"
    data = await gql(fixture_pool, preview, q=q, e=to_global_id("Invoice", 1))
    body = data["webhookPreview"]["body"]
    assert data["webhookPreview"]["fallbackReason"] is None  # deliveries run it as compiled SQL
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


# --- more rules, each alone: the field, the message, and an empty store -----------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"query": "query($id: ID) { invoice(id: $id) { id } }"}, "query", "only variable allowed"),  # nullable
        ({"query": "subscription($id: ID!) { webhookEvents { id } }"}, "query", "must be a query"),
        ({"query": "query($id: ID!) { invoice(id: $id) { ...Missing } }"}, "query", "not valid against the schema"),
        ({"url": "/relative/path"}, "url", "absolute"),
        ({"url": "https:///no-host"}, "url", "no host"),
        ({"url": "http://127.0.0.1:9/hook"}, "url", "loopback"),
        ({"url": "http://[::1]/hook"}, "url", "loopback"),
        ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url", "loopback"),
        ({"url": "http://100.64.0.1/hook"}, "url", "CGNAT"),
        ({"url": "http://224.0.0.1/hook"}, "url", "multicast"),
        ({"url": "http://169.254.1.1/hook"}, "url", "link-local"),
        ({"url": "http://2130706433/hook"}, "url", "canonical IP address"),  # 127.0.0.1 as one integer
        ({"url": "https://erp.example.com/a b"}, "url", "whitespace"),
        ({"headers": [{"name": "X-A", "value": "a\nb"}]}, "headers.0.value", "CR, LF, NUL or other control characters"),
        ({"headers": [{"name": "X:A", "value": "v"}]}, "headers.0.name", "not a valid HTTP token"),
        (
            {"headers": [{"name": f"X-{i}", "value": "v" * 500} for i in range(17)]},  # 17 fine ones, 8.5 KiB
            "headers",
            "8192 bytes",
        ),
        (
            {"headers": [{"name": "X-Ok", "value": "1"}, {"name": "Content-Type", "value": "x"}]},
            "headers.1.name",
            "cannot be overridden",
        ),
        ({"timeoutSeconds": 0}, "timeoutSeconds", "between 1 and 30"),
        ({"concurrency": 101}, "concurrency", "between 1 and 100"),
        ({"maxAttempts": -5}, "maxAttempts", "between 1 and 50"),
        ({"name": "x" * 201}, "name", "1-200 characters"),
        ({"sellerId": "garbage"}, "sellerId", "not a Seller ID"),
        ({"sellerId": to_global_id("Invoice", 1)}, "sellerId", "not a Seller ID"),
    ],
)
async def test_more_rules_refuse_with_a_clear_message_and_store_nothing(
    fixture_pool: asyncpg.Pool, fields: dict[str, Any], field: str, message: str
) -> None:
    out = await create(fixture_pool, settings=STRICT, **fields)
    assert out["webhook"] is None and out["secret"] is None
    assert any(e["field"] == field and message in e["message"] for e in out["errors"]), out["errors"]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_every_failing_field_is_reported_at_once(fixture_pool: asyncpg.Pool) -> None:
    out = await create(
        fixture_pool, settings=STRICT, url="ftp://x", maxAttempts=0, concurrency=0, query="query {", name=""
    )
    assert {e["field"] for e in out["errors"]} == {"url", "maxAttempts", "concurrency", "query", "name"}
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://user:pw@erp.example.com/h?token=1&x=2"},
        {"url": "http://127.0.0.1:9/hook", "_settings": "local"},  # allowed when private targets are
        {"headers": [{"name": f"X-{i}", "value": "v"} for i in range(20)]},  # exactly 20
        {"headers": [{"name": "Authorization", "value": "Basic eDEyMw=="}, {"name": "x-custom_!#$", "value": "ok"}]},
        {"maxAttempts": 1, "timeoutSeconds": 1, "concurrency": 1},
        {"maxAttempts": 50, "timeoutSeconds": 30, "concurrency": 100},
        {"type": "VARIANT", "query": "query($id: ID!) { variant(id: $id) { sku product { title } } }"},
        {"type": "REFUND_REQUEST", "query": "query($id: ID!) { node(id: $id) { ... on RefundRequest { status } } }"},
        {"query": "fragment F on Invoice { status } query Named($id: ID!) { invoice(id: $id) { ...F } }"},
        {"type": "VARIANT"},  # the default query selects any node
    ],
)
async def test_accepted_inputs_are_stored_as_given(fixture_pool: asyncpg.Pool, fields: dict[str, Any]) -> None:
    settings = LOCAL if fields.pop("_settings", None) else STRICT
    out = await create(fixture_pool, settings=settings, **fields)
    assert out["errors"] == [] and out["secret"].startswith("whsec_")
    hook = out["webhook"]
    for name, value in fields.items():
        assert hook[{"type": "type"}.get(name, name)] == value
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 1


async def test_the_secret_is_32_random_bytes_and_never_readable_again(fixture_pool: asyncpg.Pool) -> None:
    import base64

    first, second = await create(fixture_pool), await create(fixture_pool)
    assert first["secret"] != second["secret"]
    assert len(base64.b64decode(first["secret"].removeprefix("whsec_"))) == 32
    schema_text = schema.as_str()
    assert "secret" not in schema_text.split("type Webhook {")[1].split("}")[0]
    listed = await gql(fixture_pool, "{ webhooks { id name url } }")
    assert first["secret"] not in str(listed)


async def test_a_seller_key_creates_its_own_webhook_and_an_operator_may_choose_the_owner(
    fixture_pool: asyncpg.Pool,
) -> None:
    by_operator = await create(fixture_pool, sellerId=to_global_id("Seller", 2))
    assert by_operator["webhook"]["sellerId"] == to_global_id("Seller", 2)
    by_seller = await create(fixture_pool, Visibility(3))
    assert by_seller["webhook"]["sellerId"] == to_global_id("Seller", 3)
    owners = [r["seller_id"] for r in await fixture_pool.fetch("SELECT seller_id FROM webhooks ORDER BY id")]
    assert owners == [2, 3]


# --- update / delete --------------------------------------------------------------------------

UPDATE = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
  webhook { name url type subscribedEvents method format enabled disabledReason skipIdenticalPayloads
            maxAttempts timeoutSeconds concurrency query headers { name value } sellerId }
  errors { field message } } }"""


async def test_update_changes_only_the_fields_given(fixture_pool: asyncpg.Pool) -> None:
    # given a webhook with non-default values everywhere
    created = await create(
        fixture_pool,
        format="XML",
        method="PUT",
        events=["DELETED"],
        headers=[{"name": "X-A", "value": "1"}],
        maxAttempts=7,
        timeoutSeconds=3,
        concurrency=4,
        skipIdenticalPayloads=False,
    )
    before = {k: v for k, v in created["webhook"].items() if k != "id"}

    # when each field alone is updated, one after another
    changes: list[dict[str, Any]] = [
        {"name": "Renamed"},
        {"url": "https://other.example.com/x"},
        {"query": "query($id: ID!) { invoice(id: $id) { status } }"},
        {"headers": []},
        {"events": ["CREATED", "UPDATED"]},
        {"method": "POST"},
        {"format": "FORM"},
        {"enabled": False},
        {"skipIdenticalPayloads": True},
        {"maxAttempts": 50},
        {"timeoutSeconds": 30},
        {"concurrency": 100},
    ]
    expected = dict(before)
    for change in changes:
        data = await gql(fixture_pool, UPDATE, settings=STRICT, id=created["webhook"]["id"], input=change)
        out = data["webhookUpdate"]
        assert out["errors"] == []
        # then exactly that field changed
        key = "subscribedEvents" if "events" in change else next(iter(change))
        expected[key] = change[next(iter(change))]
        got = {k: v for k, v in out["webhook"].items() if k != "disabledReason"}
        assert got == expected, change


async def test_update_with_an_empty_input_changes_nothing(fixture_pool: asyncpg.Pool) -> None:
    created = await create(fixture_pool)
    row = dict(await fixture_pool.fetchrow("SELECT * FROM webhooks"))
    data = await gql(fixture_pool, UPDATE, id=created["webhook"]["id"], input={})
    assert data["webhookUpdate"]["errors"] == []
    after = dict(await fixture_pool.fetchrow("SELECT * FROM webhooks"))
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in row.items() if k != "updated_at"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"query": "query { "}, "query", "does not parse"),
        ({"query": "query($id: ID!) { node(id: $id) { ... on Variant { sku } } }"}, "query", "webhook's type"),
        ({"type": "REFUND_REQUEST"}, "query", "at the top level"),  # the stored query selects Invoice
        ({"url": "http://10.1.2.3/"}, "url", "private"),
        ({"url": "http://localhost/"}, "url", "resolves to 127.0.0.1"),
        ({"headers": [{"name": "Webhook-Id", "value": "x"}]}, "headers.0.name", "cannot be overridden"),
        ({"headers": [{"name": "X-A", "value": "\r\n"}]}, "headers.0.value", "CR, LF, NUL or other control characters"),
        ({"maxAttempts": 51}, "maxAttempts", "between 1 and 50"),
        ({"timeoutSeconds": 0}, "timeoutSeconds", "between 1 and 30"),
        ({"concurrency": 0}, "concurrency", "between 1 and 100"),
        ({"events": []}, "events", "at least one"),
        ({"name": ""}, "name", "1-200 characters"),
        ({"name": "ok", "maxAttempts": 0}, "maxAttempts", "between 1 and 50"),  # a valid field is not applied either
        ({"headers": [{"name": "X-A\n", "value": "v"}]}, "headers.0.name", "not a valid HTTP token"),
        ({"url": "http://127.0.0.1:9\\@93.184.216.34/"}, "url", "backslash"),
        ({"url": "http://[::1/"}, "url", "Invalid IPv6 URL"),
        ({"name": "a\0"}, "name", "NUL"),
        ({"query": "query($id: ID!) { invoice(id: $id) { status } } #\0"}, "query", "NUL"),
        ({"name": "\udc00"}, "name", "not valid Unicode"),
    ],
)
async def test_update_validates_and_stores_nothing_on_failure(
    fixture_pool: asyncpg.Pool, change: dict[str, Any], field: str, message: str
) -> None:
    created = await create(fixture_pool, query="query($id: ID!) { invoice(id: $id) { status } }")
    before = dict(await fixture_pool.fetchrow("SELECT * FROM webhooks"))
    data = await gql(fixture_pool, UPDATE, settings=STRICT, id=created["webhook"]["id"], input=change)
    out = data["webhookUpdate"]
    assert out["webhook"] is None
    assert any(e["field"] == field and message in e["message"] for e in out["errors"]), out["errors"]
    assert dict(await fixture_pool.fetchrow("SELECT * FROM webhooks")) == before


async def test_update_may_change_type_and_query_together(fixture_pool: asyncpg.Pool) -> None:
    created = await create(fixture_pool)
    data = await gql(
        fixture_pool,
        UPDATE,
        id=created["webhook"]["id"],
        input={"type": "VARIANT", "query": "query($id: ID!) { variant(id: $id) { sku } }"},
    )
    assert data["webhookUpdate"]["errors"] == []
    assert data["webhookUpdate"]["webhook"]["type"] == "VARIANT"
    assert await fixture_pool.fetchval("SELECT entity_type FROM webhooks") == "variant"


async def test_re_enabling_clears_the_disabled_reason(fixture_pool: asyncpg.Pool) -> None:
    created = await create(fixture_pool)
    await fixture_pool.execute("UPDATE webhooks SET enabled = false, disabled_reason = 'test failed'")
    data = await gql(fixture_pool, UPDATE, id=created["webhook"]["id"], input={"enabled": True})
    hook = data["webhookUpdate"]["webhook"]
    assert (hook["enabled"], hook["disabledReason"]) == (True, None)


async def test_update_and_delete_of_unknown_or_garbage_ids_are_not_found(fixture_pool: asyncpg.Pool) -> None:
    for id_ in (to_global_id("Webhook", 999), "garbage", to_global_id("Invoice", 1)):
        data = await gql(
            fixture_pool,
            'mutation($id: ID!) { u: webhookUpdate(id: $id, input: {name: "x"}) { errors { field message } } '
            "d: webhookDelete(id: $id) { deletedId errors { field message } } "
            "r: webhookRotateSecret(id: $id) { secret errors { message } } "
            "t: webhookTest(id: $id) { attempt { id } errors { message } } "
            "w: webhook(id: $id) { id } }".replace("w: webhook(id: $id) { id } }", "}"),
            id=id_,
        )
        assert data["u"]["errors"] == [{"field": "id", "message": "webhook not found"}]
        assert data["d"] == {"deletedId": None, "errors": [{"field": "id", "message": "webhook not found"}]}
        assert data["r"] == {"secret": None, "errors": [{"message": "webhook not found"}]}
        assert data["t"] == {"attempt": None, "errors": [{"message": "webhook not found"}]}
        assert (await gql(fixture_pool, "query($id: ID!) { webhook(id: $id) { id } }", id=id_)) == {"webhook": None}


async def test_delete_removes_the_webhook_and_its_event_log(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    try:
        keep = await create(fixture_pool, name="keep")
        gone = await create(fixture_pool, url=receiver.url)
        await gql(
            fixture_pool, "mutation($id: ID!) { webhookTest(id: $id) { errors { message } } }", id=gone["webhook"]["id"]
        )
    finally:
        await receiver.stop()
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_attempts") == 1

    data = await gql(
        fixture_pool,
        "mutation($id: ID!) { webhookDelete(id: $id) { deletedId errors { message } } }",
        id=gone["webhook"]["id"],
    )
    assert data["webhookDelete"] == {"deletedId": gone["webhook"]["id"], "errors": []}
    listed = await gql(fixture_pool, "{ webhooks { id } }")
    assert listed["webhooks"] == [{"id": keep["webhook"]["id"]}]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_attempts") == 0
    again = await gql(
        fixture_pool, "mutation($id: ID!) { webhookDelete(id: $id) { errors { message } } }", id=gone["webhook"]["id"]
    )
    assert again["webhookDelete"]["errors"] == [{"message": "webhook not found"}]


async def test_a_seller_may_manage_its_own_webhook_fully(fixture_pool: asyncpg.Pool) -> None:
    me = Visibility(1)
    receiver = await Receiver().start()
    try:
        out = await create(fixture_pool, me, url=receiver.url)
        hook_id = out["webhook"]["id"]
        listed = await gql(fixture_pool, "query($id: ID!) { webhooks { id } webhook(id: $id) { id } }", me, id=hook_id)
        assert listed == {"webhooks": [{"id": hook_id}], "webhook": {"id": hook_id}}
        for mutation in (
            'webhookUpdate(id: $id, input: {name: "mine"}) { errors { message } }',
            "webhookRotateSecret(id: $id) { errors { message } }",
            "webhookTest(id: $id) { errors { message } }",
            "webhookDelete(id: $id) { errors { message } }",
        ):
            data = await gql(fixture_pool, f"mutation($id: ID!) {{ {mutation} }}", me, id=hook_id)
            assert next(iter(data.values()))["errors"] == [], mutation
    finally:
        await receiver.stop()
    assert len(receiver.received) == 1
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_an_operator_sees_and_manages_every_sellers_webhooks(fixture_pool: asyncpg.Pool) -> None:
    mine = await create(fixture_pool, Visibility(1))
    theirs = await create(fixture_pool, Visibility(2))
    data = await gql(fixture_pool, "{ webhooks { id } }")
    assert {w["id"] for w in data["webhooks"]} == {mine["webhook"]["id"], theirs["webhook"]["id"]}
    only_mine = await gql(fixture_pool, "{ webhooks { id } }", Visibility(1))
    assert only_mine["webhooks"] == [{"id": mine["webhook"]["id"]}]
    data = await gql(
        fixture_pool,
        'mutation($id: ID!) { webhookUpdate(id: $id, input: {name: "by operator"}) { webhook { name } } }',
        id=theirs["webhook"]["id"],
    )
    assert data["webhookUpdate"]["webhook"] == {"name": "by operator"}


# --- ping, recorded attempts, event log ---------------------------------------------------------


async def test_ping_sequences_increase_per_webhook(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    ping = "mutation($id: ID!) { webhookTest(id: $id) { event { sequence } } }"
    try:
        out = await create(fixture_pool, url=receiver.url)
        sequences = [
            (await gql(fixture_pool, ping, id=out["webhook"]["id"]))["webhookTest"]["event"]["sequence"]
            for _ in range(3)
        ]
    finally:
        await receiver.stop()
    assert sequences == sorted(set(sequences)) and len(sequences) == 3
    assert [r.headers["Webhook-Sequence"] for r in receiver.received] == [str(s) for s in sequences]


async def test_a_failed_ping_is_recorded_and_shown_in_the_event_log(fixture_pool: asyncpg.Pool) -> None:
    # given a receiver that answers 500
    receiver = await Receiver(respond=lambda n: (500, {"X-Why": "broken"}, b"internal error")).start()
    try:
        out = await create(fixture_pool, url=receiver.url)
        hook_id = out["webhook"]["id"]
        # when the webhook is tested
        data = await gql(
            fixture_pool,
            "mutation($id: ID!) { webhookTest(id: $id) { event { id status } "
            "attempt { statusCode responseBody responseHeaders durationMs error } errors { message } } }",
            id=hook_id,
        )
    finally:
        await receiver.stop()
    test = data["webhookTest"]
    # then the attempt is answered and recorded, the event failed, and the webhook disabled
    assert test["errors"] == [] and test["event"]["status"] == "FAILED"
    assert test["attempt"]["statusCode"] == 500 and test["attempt"]["responseBody"] == "internal error"
    assert test["attempt"]["responseHeaders"]["X-Why"] == "broken" and test["attempt"]["durationMs"] >= 0
    log = await gql(
        fixture_pool,
        "query($id: ID!, $e: ID!) { webhook(id: $id) { enabled disabledReason "
        "events(status: FAILED, first: 10) { edges { node { id event attempts { statusCode } } } } } "
        "webhookEvent(id: $e) { event status attemptCount attempts { statusCode responseBody } } }",
        id=hook_id,
        e=test["event"]["id"],
    )
    assert log["webhook"]["enabled"] is False and log["webhook"]["disabledReason"] == "test failed"
    assert log["webhook"]["events"]["edges"] == [
        {"node": {"id": test["event"]["id"], "event": "ping", "attempts": [{"statusCode": 500}]}}
    ]
    assert log["webhookEvent"] == {
        "event": "ping",
        "status": "FAILED",
        "attemptCount": 1,
        "attempts": [{"statusCode": 500, "responseBody": "internal error"}],
    }


async def test_a_ping_to_a_closed_port_records_the_error_and_disables(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    url = receiver.url
    await receiver.stop()  # nothing listens there any more
    out = await create(fixture_pool, url=url, timeoutSeconds=2)
    data = await gql(
        fixture_pool,
        "mutation($id: ID!) { webhookTest(id: $id) { event { status } attempt { statusCode error } } }",
        id=out["webhook"]["id"],
    )
    attempt = data["webhookTest"]["attempt"]
    assert attempt["statusCode"] is None and attempt["error"]
    assert data["webhookTest"]["event"]["status"] == "FAILED"
    assert await fixture_pool.fetchval("SELECT disabled_reason FROM webhooks") == "test failed"


async def test_a_ping_to_a_private_target_is_refused_at_delivery_when_not_allowed(fixture_pool: asyncpg.Pool) -> None:
    # given a webhook registered while private targets were allowed, tested after they no longer are
    receiver = await Receiver().start()
    try:
        out = await create(fixture_pool, url=receiver.url)
        data = await gql(
            fixture_pool,
            "mutation($id: ID!) { webhookTest(id: $id) { attempt { statusCode error } } }",
            STRICT and OPERATOR,
            STRICT,
            id=out["webhook"]["id"],
        )
    finally:
        await receiver.stop()
    # then nothing reached the receiver and the attempt says why
    assert receiver.received == []
    attempt = data["webhookTest"]["attempt"]
    assert attempt["statusCode"] is None and "loopback" in attempt["error"]


async def test_the_ping_of_a_successful_test_is_delivered_in_the_log(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    try:
        out = await create(fixture_pool, url=receiver.url)
        test = await gql(
            fixture_pool, "mutation($id: ID!) { webhookTest(id: $id) { event { id } } }", id=out["webhook"]["id"]
        )
    finally:
        await receiver.stop()
    event_id = test["webhookTest"]["event"]["id"]
    log = await gql(
        fixture_pool,
        "query($id: ID!, $e: ID!) { webhook(id: $id) { enabled events(first: 5) { edges { node { status "
        "attempts { statusCode } } } pageInfo { hasNextPage } } } "
        "webhookEvent(id: $e) { status finishedAt attempts { statusCode responseBody } } }",
        id=out["webhook"]["id"],
        e=event_id,
    )
    assert log["webhook"]["enabled"] is True
    assert log["webhook"]["events"]["edges"] == [{"node": {"status": "DELIVERED", "attempts": [{"statusCode": 200}]}}]
    assert log["webhook"]["events"]["pageInfo"]["hasNextPage"] is False
    assert log["webhookEvent"]["status"] == "DELIVERED" and log["webhookEvent"]["finishedAt"]
    assert log["webhookEvent"]["attempts"] == [{"statusCode": 200, "responseBody": "ok"}]


# --- preview -------------------------------------------------------------------------------------

PREVIEW = """mutation($t: WebhookType!, $q: String!, $e: ID!) { webhookPreview(type: $t, query: $q, entityId: $e) {
  body errors { field message } } }"""


async def test_preview_runs_the_query_and_shapes_the_delivery_body(fixture_pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    try:
        await create(fixture_pool, url=receiver.url)  # a webhook exists; a preview must not send to it
        variant = await fixture_pool.fetchrow("SELECT id, sku FROM variants ORDER BY id LIMIT 1")
        data = await gql(
            fixture_pool,
            PREVIEW,
            t="VARIANT",
            q="query($id: ID!) { node(id: $id) { ... on Variant { sku price { amount } } } }",
            e=to_global_id("Variant", variant["id"]),
        )
    finally:
        await receiver.stop()
    body = data["webhookPreview"]["body"]
    assert data["webhookPreview"]["errors"] == []
    assert body["payload"]["data"]["node"]["sku"] == variant["sku"]
    assert body["event"] == "variant.updated" and body["id"].startswith("evt_")
    assert body["entity"] == {"type": "Variant", "id": to_global_id("Variant", variant["id"])}
    assert receiver.received == []
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_preview_of_a_missing_entity_is_a_null_node(fixture_pool: asyncpg.Pool) -> None:
    data = await gql(
        fixture_pool,
        PREVIEW,
        t="INVOICE",
        q="query($id: ID!) { node(id: $id) { ... on Invoice { id } } }",
        e=to_global_id("Invoice", 987654321),
    )
    assert data["webhookPreview"]["body"]["payload"] == {"data": {"node": None}}


@pytest.mark.parametrize(
    ("t", "q", "e", "field", "message"),
    [
        ("INVOICE", "query {", "SW52b2ljZTox", "query", "does not parse"),
        ("INVOICE", "query($id: ID!) { variant(id: $id) { id } }", "SW52b2ljZTox", "query", "at the top level"),
        ("VARIANT", "query($id: ID!) { node(id: $id) { ... on Invoice { id } } }", "VmFyaWFudDox", "query", "type"),
        ("INVOICE", "query($id: ID!) { invoice(id: $id) { id } }", "VmFyaWFudDox", "entityId", "not a Invoice ID"),
        ("INVOICE", "query($id: ID!) { invoice(id: $id) { id } }", "garbage", "entityId", "not a Invoice ID"),
    ],
)
async def test_preview_refuses_bad_queries_and_entity_ids(
    fixture_pool: asyncpg.Pool, t: str, q: str, e: str, field: str, message: str
) -> None:
    data = await gql(fixture_pool, PREVIEW, t=t, q=q, e=e)
    out = data["webhookPreview"]
    assert out["body"] is None
    assert any(err["field"] == field and message in err["message"] for err in out["errors"]), out["errors"]


QUOTA = Settings(allow_private_targets=True, seller_max_webhooks=2)
QUOTA_MESSAGE = "webhook quota reached: this seller has 2 webhooks and may have at most 2 (HOOKQL_SELLER_MAX_WEBHOOKS)"


async def test_a_seller_may_own_at_most_seller_max_webhooks_however_they_are_created(
    fixture_pool: asyncpg.Pool,
) -> None:
    seller = Visibility(1)
    for _ in range(2):
        assert (await create(fixture_pool, seller, QUOTA))["errors"] == []

    # the seller's own key, then an operator key creating for that seller: both refused
    own = await create(fixture_pool, seller, QUOTA)
    for_seller = await create(fixture_pool, OPERATOR, QUOTA, sellerId=to_global_id("Seller", 1))
    for out in (own, for_seller):
        assert out["webhook"] is None and out["secret"] is None
        [error] = out["errors"]
        assert error["field"] == "sellerId" and error["message"].startswith(QUOTA_MESSAGE), error
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks WHERE seller_id = 1") == 2

    # another seller and the operator's own webhooks are not counted against it (the operator has no quota)
    assert (await create(fixture_pool, Visibility(2), QUOTA))["errors"] == []
    for _ in range(3):
        assert (await create(fixture_pool, OPERATOR, QUOTA))["errors"] == []

    # deleting one makes room for one
    first = await fixture_pool.fetchval("SELECT min(id) FROM webhooks WHERE seller_id = 1")
    await gql(fixture_pool, "mutation($id: ID!) { webhookDelete(id: $id) { deletedId } }", seller,
              id=to_global_id("Webhook", first))
    assert (await create(fixture_pool, seller, QUOTA))["errors"] == []
    assert (await create(fixture_pool, seller, QUOTA))["errors"][0]["message"].startswith(QUOTA_MESSAGE)


async def test_concurrent_creates_cannot_pass_the_quota_together(fixture_database_url: str) -> None:
    # given: a pool wide enough that every create has a connection of its own at once
    settings = Settings(allow_private_targets=True, seller_max_webhooks=3)
    pool = await db.create_pool(fixture_database_url, min_size=12, max_size=12)
    seller_key = {"visibility": Visibility(1)}
    operator_key = {"visibility": OPERATOR, "sellerId": to_global_id("Seller", 1)}
    try:
        # when: 12 creates for one seller race, half through its key, half through an operator's
        outs = await asyncio.gather(
            *(create(pool, settings=settings, **(seller_key if i % 2 else operator_key)) for i in range(12))
        )
        # then: exactly the quota is stored, and every other create says why
        assert sum(out["errors"] == [] for out in outs) == 3
        assert all("webhook quota reached" in out["errors"][0]["message"] for out in outs if out["errors"])
        assert await pool.fetchval("SELECT count(*) FROM webhooks WHERE seller_id = 1") == 3
    finally:
        await pool.close()
