"""Integrator-keyed HMAC end to end: a receiver that computes base64(HMAC-SHA256(key, body)) on
its own (hmac + hashlib, not hookql's code) verifies every ping and every delivery, in each
format; the key is write-only; hostile keys and header names are refused, changing nothing."""

import base64
import hashlib
import hmac
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook

from app.api.schema import schema
from app.transport.http import Transport
from app.types import Visibility
from tests.integration.test_api_webhooks import create, gql
from tests.support.engine_harness import add_webhook, running_engine, wait_until
from tests.support.logs import no_tracebacks
from tests.support.receivers import Received, Receiver

KEY = "integrator-chosen key ✓"
UPDATE = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
  webhook { hmacHeader hmacKeySet } errors { field message } } }"""


def verifies(got: Received, key: str, header: str = "Marketplacer-Hmac-256") -> bool:
    """What a Marketplacer receiver does: HMAC the raw body with its key and compare."""
    mine = base64.b64encode(hmac.new(key.encode(), got.body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(mine, got.headers.get(header, ""))


@pytest.mark.parametrize("fmt", ["JSON", "XML", "FORM"])
async def test_a_ping_carries_the_integrator_hmac_beside_the_standard_webhooks_set(
    fixture_pool: asyncpg.Pool, fmt: str
) -> None:
    receiver = await Receiver().start()
    try:
        async with Transport() as transport:
            out = await create(fixture_pool, url=receiver.url + "/hook", format=fmt, hmacKey=KEY)
            data = await gql(
                fixture_pool,
                "mutation($id: ID!) { webhookTest(id: $id) { attempt { statusCode } errors { message } } }",
                transport=transport,
                id=out["webhook"]["id"],
            )
    finally:
        await receiver.stop()
    assert data["webhookTest"]["attempt"]["statusCode"] == 200
    [got] = receiver.received
    assert verifies(got, KEY)
    assert not verifies(got, KEY + "x")
    Webhook(out["secret"]).verify(got.body, got.headers, json_parse=False)  # the Standard Webhooks set stays


@pytest.mark.parametrize("fmt", ["json", "xml", "form"])
async def test_every_delivery_verifies_with_the_integrators_key(fixture_database_url: str, fmt: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            await add_webhook(
                run.pool, receiver.url, format=fmt, hmac_key=KEY, hmac_header="X-Shop-Signature"
            )
            # given two changes, each delivered (the second through the claim path once the first settles)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await receiver.wait_for(1)
            await run.pool.execute("UPDATE invoices SET status = 'shipped' WHERE id = 3")
            await receiver.wait_for(2)
    finally:
        await receiver.stop()
    assert len(receiver.received) >= 2
    assert all(verifies(got, KEY, "X-Shop-Signature") for got in receiver.received)
    assert all("Marketplacer-Hmac-256" not in got.headers for got in receiver.received)
    assert all(got.headers["webhook-signature"].startswith("v1,") for got in receiver.received)


async def test_without_a_key_no_hmac_header_is_sent(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            [got] = await receiver.wait_for(1)
    finally:
        await receiver.stop()
    assert "Marketplacer-Hmac-256" not in got.headers


async def test_the_key_is_write_only(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, hmacKey=KEY)
    assert out["errors"] == []
    webhook_type = schema._schema.type_map["Webhook"]
    assert "hmacKey" not in webhook_type.fields and "hmacKeySet" in webhook_type.fields
    data = await gql(fixture_pool, "query($id: ID!) { webhook(id: $id) { hmacHeader hmacKeySet } }",
                     id=out["webhook"]["id"])
    assert data["webhook"] == {"hmacHeader": "Marketplacer-Hmac-256", "hmacKeySet": True}
    # an empty key removes it; a new header name applies to the next attempt
    data = await gql(fixture_pool, UPDATE, id=out["webhook"]["id"], input={"hmacKey": "", "hmacHeader": "X-Sig"})
    assert data["webhookUpdate"] == {"webhook": {"hmacHeader": "X-Sig", "hmacKeySet": False}, "errors": []}
    assert await fixture_pool.fetchval("SELECT hmac_key FROM webhooks") is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"hmacKey": "k" * 1025}, "hmacKey", "hmacKey is 1025 bytes; at most 1024 are allowed"),
        ({"hmacKey": "é" * 513}, "hmacKey", "hmacKey is 1026 bytes"),
        ({"hmacKey": "k", "hmacHeader": "Bad Header"}, "hmacHeader", "is not a valid HTTP token"),
        ({"hmacKey": "k", "hmacHeader": "X-Sig\r\nX-Evil: 1"}, "hmacHeader", "is not a valid HTTP token"),
        ({"hmacKey": "k", "hmacHeader": "webhook-signature"}, "hmacHeader", "is set by hookql"),
        ({"hmacKey": "k", "hmacHeader": "Webhook-Id"}, "hmacHeader", "is set by hookql"),
        ({"hmacKey": "k", "hmacHeader": "Content-Type"}, "hmacHeader", "is set by hookql"),
        ({"hmacKey": "k", "hmacHeader": "idempotency-key"}, "hmacHeader", "is set by hookql"),
        ({"hmacKey": "k", "hmacHeader": "Connection"}, "hmacHeader", "is set by hookql"),
        ({"hmacKey": "k", "hmacHeader": "Upgrade"}, "hmacHeader", "controls the connection"),
        ({"hmacKey": "k", "hmacHeader": "X" * 101}, "hmacHeader", "longer than 100 characters"),
        ({"hmacKey": "k", "hmacHeader": "X-Same", "headers": [{"name": "x-same", "value": "x"}]}, "hmacHeader",
         "'X-Same' is both a custom header and the hmacHeader"),
    ],
)
async def test_hostile_keys_and_header_names_are_refused_changing_nothing(
    fixture_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, fields: dict[str, Any], field: str, message: str
) -> None:
    existing = await create(fixture_pool, hmacKey="kept", hmacHeader="X-Kept")
    before = await fixture_pool.fetchrow("SELECT * FROM webhooks")
    with no_tracebacks(caplog):
        created = await create(fixture_pool, **fields)
        updated = await gql(fixture_pool, UPDATE, id=existing["webhook"]["id"], input=fields)
    assert created["webhook"] is None and created["secret"] is None
    assert any(e["field"] == field and message in e["message"] for e in created["errors"]), created["errors"]
    assert any(e["field"] == field and message in e["message"] for e in updated["webhookUpdate"]["errors"])
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 1
    assert await fixture_pool.fetchrow("SELECT * FROM webhooks") == before


async def test_a_custom_header_may_not_take_the_hmac_headers_name(fixture_pool: asyncpg.Pool) -> None:
    out = await create(fixture_pool, hmacKey="k")
    data = await gql(fixture_pool, UPDATE, id=out["webhook"]["id"],
                     input={"headers": [{"name": "Marketplacer-HMAC-256", "value": "x"}]})
    assert data["webhookUpdate"]["errors"] == [
        {"field": "headers", "message": "'Marketplacer-Hmac-256' is both a custom header and the hmacHeader;"
         " choose another name for one of them"}
    ]
    # without a key, no such header is sent, so the name is free
    out = await create(fixture_pool, headers=[{"name": "Marketplacer-Hmac-256", "value": "x"}])
    assert out["errors"] == []


async def test_another_sellers_webhook_cannot_be_given_a_key(
    fixture_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = await create(fixture_pool, sellerId="U2VsbGVyOjE=")  # Seller:1
    before = await fixture_pool.fetchrow("SELECT * FROM webhooks")
    with no_tracebacks(caplog):
        data = await gql(fixture_pool, UPDATE, Visibility(2), id=theirs["webhook"]["id"], input={"hmacKey": "mine"})
    assert data["webhookUpdate"] == {"webhook": None, "errors": [{"field": "id", "message": "webhook not found"}]}
    assert await fixture_pool.fetchrow("SELECT * FROM webhooks") == before


async def test_a_hanging_receiver_fails_the_ping_and_logs_no_traceback(
    fixture_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await Receiver(delay_s=3.0).start()
    try:
        async with Transport() as transport:
            out = await create(fixture_pool, url=receiver.url, hmacKey=KEY, timeoutSeconds=1)
            with no_tracebacks(caplog):
                data = await gql(
                    fixture_pool,
                    "mutation($id: ID!) { webhookTest(id: $id) { attempt { error } } }",
                    transport=transport,
                    id=out["webhook"]["id"],
                )
            await wait_until(lambda: len(receiver.received) == 1)
    finally:
        await receiver.stop()
    assert data["webhookTest"]["attempt"]["error"] == "timeout after 1 s"
    assert verifies(receiver.received[0], KEY)  # signed even though nobody answered in time
