"""Limits, budgets and quotas of /graphql, played by a hostile seller over real HTTP: documents over
their key's cost limits are refused before any SQL, a request runs under a deadline and stops
when its client leaves, answers have a size cap, and each key has a rate, a number of
requests running at once and a bucket of cost points. Webhook queries are held to their owner's
limits."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from app.api.asgi import graphql_app
from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.config import Settings
from app.store.apikeys import create_key
from app.types import OPERATOR, Visibility
from tests.support.live_server import serving
from tests.support.locks import tables_locked, waiting_on_locks
from tests.support.receivers import Receiver

SELLER_ID = 1
# The query: seller › products nested 5 levels deep, 221 characters.
FIVE_LEVELS = (
    "query($id: ID!) { invoice(id: $id) { seller { products { legacyId seller { products { legacyId "
    "seller { products { legacyId seller { products { legacyId seller { products { legacyId } } } } } } } } } } } }"
)
THOUSAND_ALIASES = "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }"
# 1,000 aliased pages: 13,000 tokens, refused while parsing (app.evaluation.cost.MAX_TOKENS, 5,000)
THOUSAND_PAGES = "{ " + " ".join(f"a{i}: invoices(first: 1) {{ nodes {{ id }} }}" for i in range(1000)) + " }"
# 100 invoices with their line items: ~8,200 objects and values estimated, between a seller's
# limit (5,000) and the operator's (50,000)
MID_SIZED = "{ invoices(first: 100) { nodes { id lineItems { quantity unitPrice { amount } } } } }"
INVOICES = "{ invoices(first: 5) { nodes { legacyId } } }"
READ_TABLES = ("invoices", "sellers", "products")


@contextlib.asynccontextmanager
async def api(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[str]:
    graphql = graphql_app(pool, settings)
    async with serving(Starlette(routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)])) as base:
        yield base + "/graphql"


async def keys(pool: asyncpg.Pool) -> tuple[str, str]:
    """(a seller's key, the operator's key)."""
    async with pool.acquire() as conn:
        return await create_key(conn, seller_id=SELLER_ID), await create_key(conn, seller_id=None)


async def keys_for_empty(pool: asyncpg.Pool) -> tuple[str, str]:
    await pool.execute("INSERT INTO sellers (id, name) VALUES ($1, 'Acme')", SELLER_ID)
    return await keys(pool)


async def post(url: str, key: str, query: str, **variables: Any) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.post(
        url, json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        return r.status, dict(r.headers), await r.json()


async def _none_waiting(conn: asyncpg.Connection) -> bool:
    return await waiting_on_locks(conn) == 0


async def _some_waiting(conn: asyncpg.Connection) -> bool:
    return await waiting_on_locks(conn) > 0


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    """Wait for a positive signal: `condition()` (async) becoming true."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def a_seller_invoice(pool: asyncpg.Pool) -> str:
    return to_global_id("Invoice", await pool.fetchval("SELECT min(id) FROM invoices WHERE seller_id = $1", SELLER_ID))


# -- static cost, before any work ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (FIVE_LEVELS, "exceeds the seller limit of 5,000 (estimated objects and values returned"),
        (THOUSAND_ALIASES, "query uses 1,000 aliases; the seller limit is 30"),
        (THOUSAND_PAGES, "the document has more than 5,000 tokens, this API's limit"),
    ],
)
async def test_a_costly_document_is_refused_before_any_sql(
    fixture_pool: asyncpg.Pool, fixture_database_url: str, query: str, message: str
) -> None:
    seller, _ = await keys(fixture_pool)
    invoice = await a_seller_invoice(fixture_pool)
    # given every table the query reads locked: a statement on any of them would wait
    async with api(fixture_pool, Settings()) as url, tables_locked(fixture_database_url, *READ_TABLES):
        started = time.monotonic()
        status, _, body = await post(url, seller, query, **({"id": invoice} if "$id" in query else {}))
        elapsed_s = time.monotonic() - started
    # then the answer came at once, a 400 naming the limit and the cost measured
    assert status == 400 and elapsed_s < 1.0
    assert body["data"] is None
    [error] = body["errors"]
    assert message in error["message"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    if query is THOUSAND_PAGES:
        assert error["extensions"]["limit"] == {"maxTokens": 5000}
    else:
        assert error["extensions"]["limit"] == {"kind": "seller", "maxDepth": 8, "maxAliases": 30, "maxCost": 5000}
        cost = error["extensions"]["cost"]
        assert cost["nodes"] > 5000 or cost["aliases"] > 30


async def test_the_operator_has_higher_limits(fixture_pool: asyncpg.Pool) -> None:
    seller, operator = await keys(fixture_pool)
    async with api(fixture_pool, Settings()) as url:
        refused = await post(url, seller, MID_SIZED)
        served = await post(url, operator, MID_SIZED)
    assert refused[0] == 400 and "query cost 8,201 exceeds the seller limit" in refused[2]["errors"][0]["message"]
    assert served[0] == 200 and "errors" not in served[2]
    assert len(served[2]["data"]["invoices"]["nodes"]) == 100


async def test_a_subscription_is_measured_too(pool: asyncpg.Pool) -> None:
    seller, _ = await keys_for_empty(pool)
    aliased = "subscription { webhookEvents { " + " ".join(f"a{i}: id" for i in range(31)) + " } }"
    async with api(pool, Settings()) as url:
        ws_url = url.replace("http://", "ws://")
        protocols = [websockets.Subprotocol("graphql-transport-ws")]
        async with websockets.connect(ws_url, subprotocols=protocols) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {seller}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": aliased}}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert answer["type"] == "error"
    assert "31 aliases; the seller limit is 30" in answer["payload"][0]["message"]


# -- runtime budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        INVOICES,  # a page: the resolver's own statement
        "query($id: ID!) { invoice(id: $id) { legacyId } }",  # a DataLoader's batch, run by a task of its own
    ],
)
async def test_a_request_past_its_deadline_is_cancelled_with_a_clear_error(
    fixture_pool: asyncpg.Pool, fixture_database_url: str, query: str
) -> None:
    _, operator = await keys(fixture_pool)
    invoice = await a_seller_invoice(fixture_pool)
    # given the invoices locked, so reading them waits (a slow statement, as under load)
    settings = Settings(request_timeout_ms=300)
    async with api(fixture_pool, settings) as url, tables_locked(fixture_database_url, "invoices") as locker:
        status, _, body = await post(url, operator, query, **({"id": invoice} if "$id" in query else {}))
        # then the client hears of the deadline, and the statement stopped waiting while the
        # lock is still held: it was cancelled, not finished
        assert status == 503
        assert body["errors"][0]["message"].startswith("the request did not finish within its 300 ms deadline")
        assert body["errors"][0]["extensions"]["code"] == "DEADLINE_EXCEEDED"
        await until(lambda: _none_waiting(locker))



async def test_a_client_that_leaves_cancels_its_request(fixture_pool: asyncpg.Pool, fixture_database_url: str) -> None:
    _, operator = await keys(fixture_pool)
    invoice = await a_seller_invoice(fixture_pool)
    body = json.dumps({"query": "query($id: ID!) { invoice(id: $id) { legacyId } }", "variables": {"id": invoice}})
    async with api(fixture_pool, Settings()) as url:
        parts = urlsplit(url)
        async with tables_locked(fixture_database_url, "invoices") as locker:
            # given a request whose statement is waiting for the locked table
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(
                (
                    f"POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {operator}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
                ).encode()
            )
            await writer.drain()
            await until(lambda: _some_waiting(locker))
            # when the client disconnects
            writer.close()
            await writer.wait_closed()
            # then the statement is cancelled while the lock is still held
            await until(lambda: _none_waiting(locker))



async def test_a_response_over_the_size_cap_is_a_clear_error(fixture_pool: asyncpg.Pool) -> None:
    _, operator = await keys(fixture_pool)
    async with api(fixture_pool, Settings(max_response_bytes=2_000)) as url:
        small = await post(url, operator, INVOICES)
        big = await post(url, operator, "{ invoices(first: 100) { nodes { id legacyId status currency } } }")
    assert small[0] == 200 and len(small[2]["data"]["invoices"]["nodes"]) == 5
    assert big[0] == 400
    [error] = big[2]["errors"]
    assert "over the limit of 2,000 (max_response_bytes)" in error["message"]
    assert error["extensions"]["code"] == "RESPONSE_TOO_LARGE"


# -- quotas --------------------------------------------------------------------------------------


async def test_a_key_over_its_rate_gets_429_with_retry_after(fixture_pool: asyncpg.Pool) -> None:
    seller, operator = await keys(fixture_pool)
    async with api(fixture_pool, Settings(key_requests_per_s=1)) as url:
        # a burst of twice the rate is admitted, then the key is refused
        answers = [await post(url, seller, "{ __typename }") for _ in range(3)]
        other = await post(url, operator, "{ __typename }")
    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, body = answers[2]
    assert int(headers["Retry-After"]) >= 1
    assert "over its rate of 1 requests per second" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert other[0] == 200  # another key is not held back


async def test_a_key_with_too_many_requests_running_gets_429(
    fixture_pool: asyncpg.Pool, fixture_database_url: str
) -> None:
    seller, operator = await keys(fixture_pool)
    async with api(fixture_pool, Settings(key_max_concurrent_requests=1)) as url:
        async with tables_locked(fixture_database_url, "invoices") as locker:
            # given one request of the seller running (waiting on the locked invoices)
            first = asyncio.create_task(post(url, seller, INVOICES))
            await until(lambda: _some_waiting(locker))
            # when it sends another, then that one is refused at once; another key is not
            second = await post(url, seller, "{ __typename }")
            other = await post(url, operator, "{ __typename }")
        # and once the first has finished, the seller may send again
        assert (await first)[0] == 200
        again = await post(url, seller, "{ __typename }")
    assert second[0] == 429 and int(second[1]["Retry-After"]) >= 1
    assert "already has 1 requests running" in second[2]["errors"][0]["message"]
    assert other[0] == 200 and again[0] == 200


# -- the cost budget -----------------------------------------------------------------------------

# Estimated at 1 + 100 + 100 + 2,000 + 2,000 = 4,201 points (20 line items an invoice); seller 1 of
# the fixtures has 21 invoices with 52 line items: 1 + 21 + 21 + 52 + 52 = 147 returned.
COSTLY = "{ invoices(first: 100) { nodes { id lineItems { quantity } } } }"
BUDGET = Settings(seller_cost_bucket=5_000, seller_cost_restore_per_s=100)


async def test_what_a_document_did_not_return_flows_back_to_its_keys_bucket(fixture_pool: asyncpg.Pool) -> None:
    seller, _ = await keys(fixture_pool)
    async with api(fixture_pool, BUDGET) as url:
        # five documents of 4,201 points in a row from a bucket of 5,000 (without the refunds, the
        # second would be throttled): each returns 147, so 4,265 points or more are left for a next one
        answers = [await post(url, seller, COSTLY) for _ in range(5)]
    assert [status for status, _, _ in answers] == [200] * 5
    costs = [body["extensions"]["cost"] for _, _, body in answers]
    assert all((c["requestedQueryCost"], c["actualQueryCost"]) == (4_201, 147) for c in costs), costs[0]
    assert costs[0]["throttleStatus"]["maximumAvailable"] == 5_000 and costs[0]["throttleStatus"]["restoreRate"] == 100
    # what is left goes down by about what each returned (the bucket refills meanwhile)
    available = [c["throttleStatus"]["currentlyAvailable"] for c in costs]
    assert 5_000 - 147 <= available[0] <= 5_000 and available[-1] < available[0]


async def test_a_key_whose_bucket_cannot_pay_is_throttled_with_retry_after_and_refused_before_any_lookup(
    fixture_pool: asyncpg.Pool, fixture_database_url: str
) -> None:
    seller, operator = await keys(fixture_pool)
    async with api(fixture_pool, BUDGET) as url:
        async with tables_locked(fixture_database_url, "invoices") as locker:
            # given one costly document running (waiting on the locked invoices): 4,201 points taken
            first = asyncio.create_task(post(url, seller, COSTLY))
            await until(lambda: _some_waiting(locker))
            # when the seller sends another, then its 799 points cannot pay for it: THROTTLED
            throttled = await post(url, seller, COSTLY)
            # and until they could, its requests are refused without the key even being looked up
            async with tables_locked(fixture_database_url, "api_keys"):
                early = await asyncio.wait_for(post(url, seller, "{ __typename }"), 5.0)
            # while another key is not held back
            other = await post(url, operator, "{ __typename }")
        # and once the first has returned its 147 points, the rest flows back and the seller runs again
        done = await first
        again = await post(url, seller, COSTLY)
    status, headers, body = throttled
    assert status == 429 and body["data"] is None
    assert 25 <= int(headers["Retry-After"]) <= 35  # 3,402 points missing at 100 a second
    [error] = body["errors"]
    assert error["extensions"]["code"] == "THROTTLED"
    assert "of its 5,000 points and its document asks for 4,201" in error["message"]
    assert "seller_cost_bucket" in error["message"] and "Retry-After" in error["message"]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 4_201 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["currentlyAvailable"] < 4_201
    assert early[0] == 429 and early[2]["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert int(early[1]["Retry-After"]) >= 1
    assert other[0] == 200
    assert done[0] == 200 and len(done[2]["data"]["invoices"]["nodes"]) == 21
    assert done[2]["extensions"]["cost"]["actualQueryCost"] == 147
    assert again[0] == 200


# -- webhook queries: their owner's limits -------------------------------------------------------

# ~17,000 objects and values estimated: within the operator's limits, over a seller's
HEAVY_WEBHOOK_QUERY = (
    "query($id: ID!) { invoice(id: $id) { seller { products { variants { sku } "
    "seller { products { variants { sku } } } } } } }"
)
CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) {
  webhook { id } errors { field message } } }"""
UPDATE = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
  webhook { query } errors { field message } } }"""
PREVIEW = """mutation($q: String!, $e: ID!) { webhookPreview(type: INVOICE, query: $q, entityId: $e) {
  body errors { field message } } }"""


async def gql(pool: asyncpg.Pool, visibility: Visibility, query: str, **variables: Any) -> Any:
    result = await schema.execute(query, variable_values=variables, context_value=make_context(pool, visibility))
    assert result.errors is None, result.errors
    return result.data


def webhook(**fields: Any) -> dict[str, Any]:
    return {"name": "ERP", "url": "https://erp.example.com/hooks", "type": "INVOICE", **fields}


async def test_webhook_queries_are_held_to_their_owners_limits(fixture_pool: asyncpg.Pool) -> None:
    seller_gid = to_global_id("Seller", SELLER_ID)
    cost_message = "exceeds the seller limit of 5,000"
    # a seller's own webhook, and one the operator registers for that seller: refused, nothing stored
    for visibility, extra in ((Visibility(SELLER_ID), {}), (OPERATOR, {"sellerId": seller_gid})):
        data = await gql(fixture_pool, visibility, CREATE, input=webhook(query=HEAVY_WEBHOOK_QUERY, **extra))
        [error] = data["webhookCreate"]["errors"]
        assert error["field"] == "query" and cost_message in error["message"]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0
    # the operator's own webhook: accepted
    data = await gql(fixture_pool, OPERATOR, CREATE, input=webhook(query=HEAVY_WEBHOOK_QUERY))
    assert data["webhookCreate"]["errors"] == []
    # a seller's webhook updated to the heavy query: refused, the stored query unchanged
    data = await gql(fixture_pool, Visibility(SELLER_ID), CREATE, input=webhook())
    hook_id = data["webhookCreate"]["webhook"]["id"]
    data = await gql(fixture_pool, Visibility(SELLER_ID), UPDATE, id=hook_id, input={"query": HEAVY_WEBHOOK_QUERY})
    assert cost_message in data["webhookUpdate"]["errors"][0]["message"]
    stored = await fixture_pool.fetchval("SELECT query FROM webhooks WHERE seller_id = $1", SELLER_ID)
    assert stored != HEAVY_WEBHOOK_QUERY
    # a preview runs with the caller's visibility, so with the caller's limits
    invoice = await a_seller_invoice(fixture_pool)
    data = await gql(fixture_pool, Visibility(SELLER_ID), PREVIEW, q=HEAVY_WEBHOOK_QUERY, e=invoice)
    assert data["webhookPreview"]["body"] is None
    assert cost_message in data["webhookPreview"]["errors"][0]["message"]
    data = await gql(fixture_pool, OPERATOR, PREVIEW, q=HEAVY_WEBHOOK_QUERY, e=invoice)
    assert data["webhookPreview"]["errors"] == [] and data["webhookPreview"]["body"]["payload"]["data"]["invoice"]


async def test_a_ping_to_a_slow_receiver_outlasts_the_request_deadline(fixture_pool: asyncpg.Pool) -> None:
    # given a receiver that answers after 1.5 s, a webhook with a 5 s timeout, and a 500 ms deadline
    _, operator = await keys(fixture_pool)
    receiver = await Receiver(delay_s=1.5).start()
    settings = Settings(request_timeout_ms=500, allow_private_targets=True)
    try:
        async with api(fixture_pool, settings) as url:
            _, _, created = await post(
                url,
                operator,
                "mutation($to: String!) { webhookCreate(input: {name: \"slow\", url: $to, type: INVOICE,"
                " timeoutSeconds: 5}) { webhook { id } errors { message } } }",
                to=receiver.url + "/hook",
            )
            webhook_id = created["data"]["webhookCreate"]["webhook"]["id"]
            # when the operator tests it
            status, _, body = await post(
                url,
                operator,
                "mutation($id: ID!) { webhookTest(id: $id) { attempt { statusCode } event { status } } }",
                id=webhook_id,
            )
    finally:
        await receiver.stop()
    # then the ping's own timeout, not the request deadline, bounds the wait: it is answered
    assert status == 200, body
    assert body["data"]["webhookTest"] == {"attempt": {"statusCode": 200}, "event": {"status": "DELIVERED"}}


async def test_a_subscription_over_plain_http_is_a_clear_400(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    # given a seller's key
    seller, _ = await keys_for_empty(pool)
    async with api(pool, Settings()) as url:
        # when a subscription is POSTed instead of sent over a websocket
        status, _, body = await post(url, seller, "subscription { webhookEvents { eventId } }")
    # then it is refused before it runs, and nothing is logged as a fault
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "SUBSCRIPTION_NEEDS_WEBSOCKET"
    assert "websocket" in body["errors"][0]["message"]
    assert not [r for r in caplog.records if r.exc_info]
