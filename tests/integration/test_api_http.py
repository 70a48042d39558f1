"""/graphql over real HTTP and websockets: bearer keys, JSON errors with honest status codes,
GraphiQL without a key, a bounded request body."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from app.api.asgi import MAX_BODY_BYTES, graphql_app
from app.config import Settings
from app.store.apikeys import create_key
from app.web.graphiql import graphiql_page
from tests.support.live_server import serving


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, str]]:
    """(URL of /graphql on a live server, an operator key)."""
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="t")
    graphql = graphql_app(pool, Settings(), ide=graphiql_page)
    async with serving(Starlette(routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)])) as base:
        yield base + "/graphql", key


async def request(url: str, method: str = "POST", **kwargs: Any) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as r:
        body = await r.text()
        is_json = r.content_type == "application/json"
        return r.status, r.headers.get("WWW-Authenticate", ""), json.loads(body) if is_json else body


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing API key: send `Authorization: Bearer <key>`"),
        ("Basic dXNlcjpwdw==", "missing API key: send `Authorization: Bearer <key>`"),
        ("Bearer", "missing API key: send `Authorization: Bearer <key>`"),
        ("Bearer hk_not-a-key", "invalid API key"),
    ],
)
async def test_a_request_without_a_valid_key_is_401_json(
    api: tuple[str, str], authorization: str | None, message: str
) -> None:
    url, _ = api
    headers = {"Authorization": authorization} if authorization else {}
    query = {"query": "{ __typename }"}
    for method, kwargs in (("POST", {"json": query}), ("GET", {"params": query})):
        status, challenge, body = await request(url, method, headers=headers, **kwargs)
        assert (status, body) == (401, {"errors": [{"message": message}]})
        assert challenge.startswith("Bearer")


async def test_graphiql_loads_without_a_key_and_its_requests_need_one(api: tuple[str, str]) -> None:
    url, key = api
    status, _, page = await request(url, "GET", headers={"Accept": "text/html"})
    assert status == 200 and "graphiql" in page.lower()
    status, _, body = await request(url, "GET", params={"query": "{ __typename }"}, headers={"Accept": "text/html"})
    assert status == 401
    auth = {"Authorization": f"Bearer {key}"}
    status, _, body = await request(url, "GET", params={"query": "{ __typename }"}, headers=auth)
    assert (status, body["data"]) == (200, {"__typename": "Query"}) and "errors" not in body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Unable to parse request body as JSON"),
        (b"5", "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b"[]", "Batching is not enabled"),
        (b"{}", "No GraphQL query found"),
        (b'{"query": 5}', "`query` must be a string"),
        (b'{"query": "{ __typename }", "variables": "x"}', "`variables` must be an object"),
        (b'{"query": "{ invoices(first: "}', "Syntax Error"),
        (b'{"query": "{ nope }"}', "Cannot query field"),
        (
            b'{"query": "query($f: Int) { invoices(first: $f) { edges { cursor } } }", "variables": {"f": "x"}}',
            "Variable '$f' has invalid value",
        ),
        (b'{"query": "{ __typename }", "operationName": "nope"}', 'Unknown operation named "nope"'),
    ],
)
async def test_a_malformed_request_is_400_json(api: tuple[str, str], body: bytes, message: str) -> None:
    url, key = api
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    status, _, answer = await request(url, data=body, headers=headers)
    assert status == 400
    assert message in answer["errors"][0]["message"]


async def test_an_error_while_executing_is_an_ordinary_graphql_result(api: tuple[str, str]) -> None:
    # a resolver's error (here a bad `first`) is data, not a bad request: 200 with errors and a path
    url, key = api
    query = {"query": "{ invoices(first: 500) { edges { cursor } } }"}
    status, _, body = await request(url, json=query, headers={"Authorization": f"Bearer {key}"})
    assert status == 200
    assert body["errors"][0]["path"] == ["invoices"]
    assert "between 0 and 100" in body["errors"][0]["message"]


async def raw_http(url: str, head: str, body_chunks: list[bytes]) -> tuple[int, Any]:
    """Speak HTTP/1.1 by hand: aiohttp cannot declare a length it does not send."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode())
        for chunk in body_chunks:
            writer.write(chunk)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_an_oversized_body_is_refused_without_being_read(api: tuple[str, str]) -> None:
    url, key = api
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        "Connection: close\r\n"
    )
    # declared: answered at once, nothing sent
    status, body = await raw_http(url, head + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n", [])
    assert status == 413 and "larger than" in body["errors"][0]["message"]
    # chunked: counted while read. Exactly the limit, then one byte more and no end: the server
    # stops on that last byte, so nothing unread is left to reset the connection under the answer.
    chunk = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MAX_BODY_BYTES // len(chunk)) + [b"1\r\nx\r\n"]
    status, body = await raw_http(url, head + "Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert status == 413 and "larger than" in body["errors"][0]["message"]


async def test_a_websocket_may_authenticate_with_the_upgrade_header(api: tuple[str, str]) -> None:
    url, key = api
    ws_url = url.replace("http://", "ws://")
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(
        ws_url, subprotocols=protocols, additional_headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }"}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (message["type"], message["id"], message["payload"]["data"]) == ("next", "1", {"__typename": "Query"})
        # a query over the websocket pays from the key's cost bucket, as over HTTP
        assert message["payload"]["extensions"]["cost"]["actualQueryCost"] == 1


async def test_the_scheme_name_is_case_insensitive(api: tuple[str, str]) -> None:
    url, key = api
    status, _, body = await request(url, json={"query": "{ __typename }"}, headers={"Authorization": f"bearer {key}"})
    assert (status, body["data"]) == (200, {"__typename": "Query"}) and "errors" not in body


async def test_a_seller_key_over_http_sees_only_its_seller(api: tuple[str, str], pool: asyncpg.Pool) -> None:
    # given two sellers and a key bound to the first
    url, _ = api
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO sellers (id, name) VALUES (1, 'Acme'), (2, 'Globex')")
        seller_key = await create_key(conn, seller_id=1, name="acme")
    # when it asks for both sellers, then the other one is null, like a missing one
    query = '{ a: node(id: "U2VsbGVyOjE=") { ... on Seller { name } } b: node(id: "U2VsbGVyOjI=") { id } }'
    status, _, body = await request(url, json={"query": query}, headers={"Authorization": f"Bearer {seller_key}"})
    assert (status, body["data"]) == (200, {"a": {"name": "Acme"}, "b": None}) and "errors" not in body
