"""Hostile input over real HTTP: NUL, lone surrogates, absurd lengths, header names with a trailing
newline, URLs that parsers read differently. Each is a clear answer (a field error, or "not found"
for an ID), nothing is stored, and nothing is logged as a traceback (every test here fails if
anything is)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from app.api.asgi import graphql_app
from app.api.ids import to_global_id
from app.config import Settings
from app.store.apikeys import create_key
from tests.support.live_server import serving
from tests.support.logs import no_tracebacks

CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) {
  webhook { id } secret errors { field message } } }"""
UPDATE = """mutation($id: ID!, $input: WebhookUpdateInput!) { webhookUpdate(id: $id, input: $input) {
  webhook { id } errors { field message } } }"""
VALID = {"name": "ERP", "url": "https://erp.example.com/hooks", "type": "INVOICE"}
QUERY = "query($id: ID!) { invoice(id: $id) { id status } }"


@dataclass(frozen=True)
class Api:
    url: str
    key: str
    pool: asyncpg.Pool

    async def post(self, document: str, **variables: Any) -> dict[str, Any]:
        """The JSON answer; aiohttp's JSON escapes lone surrogates (`"\\ud800"`), as browsers' do."""
        headers = {"Authorization": f"Bearer {self.key}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, json={"query": document, "variables": variables}, headers=headers) as response,
        ):
            body = await response.json()
        assert response.status == 200, body
        return dict(body)

    async def webhooks(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch("SELECT * FROM webhooks ORDER BY id")]


@pytest.fixture(autouse=True)
def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    with no_tracebacks(caplog):
        yield


@pytest.fixture
async def api(fixture_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    async with fixture_pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ops")
    graphql = graphql_app(fixture_pool, Settings(allow_private_targets=False))
    async with serving(Starlette(routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)])) as base:
        yield Api(base + "/graphql", key, fixture_pool)


EDGES = [
    # header names must be tokens exactly: `$` in a `^…$` pattern matches before a final "\n"
    ({"headers": [{"name": "X-A\n", "value": "v"}]}, "headers.0.name", "is not a valid HTTP token"),
    ({"headers": [{"name": "Host\n", "value": "v"}]}, "headers.0.name", "is not a valid HTTP token"),
    ({"headers": [{"name": "X-A", "value": "a\rb"}]}, "headers.0.value", "CR, LF, NUL or other control"),
    ({"headers": [{"name": "Content-Length", "value": "1"}]}, "headers.0.name", "cannot be overridden"),
    ({"headers": [{"name": "Transfer-Encoding", "value": "chunked"}]}, "headers.0.name", "cannot be overridden"),
    # a backslash: urllib reads host 93.184.216.34, a browser 127.0.0.1:9
    ({"url": "http://127.0.0.1:9\\@93.184.216.34/"}, "url", "must not contain a backslash"),
    ({"url": "http://[::1/"}, "url", "URL is malformed: Invalid IPv6 URL"),
    ({"url": "http://[::1]:80\\@example.com/"}, "url", "backslash"),
    # NUL anywhere: PostgreSQL text cannot hold it
    ({"name": "a\0b"}, "name", "name must not contain NUL characters"),
    ({"url": "https://erp.example.com/\0"}, "url", "url must not contain NUL characters"),
    ({"query": QUERY + " # \0"}, "query", "query must not contain NUL characters"),
    ({"headers": [{"name": "X-A\0", "value": "v"}]}, "headers.0.name", "must not contain NUL characters"),
    ({"headers": [{"name": "X-A", "value": "\0"}]}, "headers.0.value", "must not contain NUL characters"),
    ({"sellerId": "\0"}, "sellerId", "must not contain NUL characters"),
    # lone surrogates: JSON can spell them, nothing can encode them
    ({"name": "\ud800"}, "name", "name is not valid Unicode (it contains a lone surrogate)"),
    ({"url": "https://erp.example.com/\udfff"}, "url", "not valid Unicode"),
    ({"query": QUERY + " # \ud800"}, "query", "not valid Unicode"),
    ({"headers": [{"name": "X-A", "value": "\udbff"}]}, "headers.0.value", "not valid Unicode"),
    ({"sellerId": "\ud800"}, "sellerId", "not valid Unicode"),
    # absurd lengths
    ({"name": "n" * 200_000}, "name", "longer than 100000 characters"),
    ({"headers": [{"name": "X-A", "value": "v" * 200_000}]}, "headers.0.value", "longer than 100000 characters"),
    ({"headers": [{"name": f"X-{i}", "value": "v"} for i in range(5_000)]}, "headers", "at most 20 headers"),
]


@pytest.mark.parametrize(("fields", "field", "message"), EDGES, ids=[json.dumps(e[0])[:48] for e in EDGES])
async def test_a_hostile_create_is_a_field_error_and_stores_nothing(
    api: Api, fields: dict[str, Any], field: str, message: str
) -> None:
    body = await api.post(CREATE, input={**VALID, **fields})
    out = body["data"]["webhookCreate"]
    assert "errors" not in body and out["webhook"] is None and out["secret"] is None
    assert any(e["field"] == field and message in e["message"] for e in out["errors"]), out["errors"]
    assert all(len(e["message"]) < 300 for e in out["errors"])  # no input is echoed back whole
    assert await api.webhooks() == []


UPDATE_EDGES = [edge for edge in EDGES if "sellerId" not in edge[0]]  # an owner is chosen once, at create


@pytest.mark.parametrize(
    ("fields", "field", "message"), UPDATE_EDGES, ids=[json.dumps(e[0])[:48] for e in UPDATE_EDGES]
)
async def test_a_hostile_update_is_a_field_error_and_changes_nothing(
    api: Api, fields: dict[str, Any], field: str, message: str
) -> None:
    created = (await api.post(CREATE, input={**VALID, "query": QUERY}))["data"]["webhookCreate"]["webhook"]
    before = await api.webhooks()
    out = (await api.post(UPDATE, id=created["id"], input=fields))["data"]["webhookUpdate"]
    assert out["webhook"] is None
    assert any(e["field"] == field and message in e["message"] for e in out["errors"]), out["errors"]
    assert await api.webhooks() == before


async def test_a_nul_in_a_string_literal_of_the_document_is_a_field_error(api: Api) -> None:
    body = await api.post(
        'mutation { webhookCreate(input: {name: "a\\u0000b", url: "https://erp.example.com/", type: INVOICE}) {'
        " webhook { id } errors { field message } } }"
    )
    assert body["data"]["webhookCreate"] == {
        "webhook": None,
        "errors": [{"field": "name", "message": "name must not contain NUL characters"}],
    }
    assert await api.webhooks() == []


GARBAGE_IDS = [
    "\0",
    "SW52b2ljZTox\0",
    "\ud800",
    "SW52b2ljZTox\udc00",
    "x" * 100_000,
    base64.b64encode("Invoice:1²".encode()).decode(),  # a digit to str.isdigit(), not to int()
    base64.b64encode(b"Invoice:\0").decode(),
    base64.b64encode(b"Invoice:\xed\xa0\x80").decode(),  # a surrogate, UTF-8-encoded: not UTF-8
    base64.b64encode(b"Invoice:" + b"9" * 40).decode(),  # beyond bigint
]


@pytest.mark.parametrize("garbage", GARBAGE_IDS, ids=range(len(GARBAGE_IDS)))
async def test_id_arguments_that_are_no_ids_are_not_found(api: Api, garbage: str) -> None:
    # given: the same query with a real ID finds the invoice
    lookups = (
        "query($id: ID!) { invoice(id: $id) { id } variant(id: $id) { id } refundRequest(id: $id) { id }"
        " node(id: $id) { id } nodes(ids: [$id, $id]) { id } webhook(id: $id) { id } webhookEvent(id: $id) { id } }"
    )
    found = (await api.post(lookups, id=to_global_id("Invoice", 1)))["data"]
    assert found["invoice"] == {"id": to_global_id("Invoice", 1)}
    # when: the ID is garbage, then: nothing is found, and nothing fails
    body = await api.post(lookups, id=garbage)
    assert "errors" not in body
    assert {"data": body["data"]} == {
        "data": {
            "invoice": None,
            "variant": None,
            "refundRequest": None,
            "node": None,
            "nodes": [None, None],
            "webhook": None,
            "webhookEvent": None,
        }
    }


@pytest.mark.parametrize("garbage", GARBAGE_IDS, ids=range(len(GARBAGE_IDS)))
async def test_mutations_given_no_id_answer_not_found(api: Api, garbage: str) -> None:
    body = await api.post(
        "mutation($id: ID!) {"
        " d: webhookDelete(id: $id) { errors { field message } }"
        " r: webhookRotateSecret(id: $id) { errors { field message } }"
        " t: webhookTest(id: $id) { errors { field message } }"
        ' u: webhookUpdate(id: $id, input: {name: "x"}) { errors { field message } }'
        ' p: webhookReplay(webhookId: $id, since: "2026-01-01T00:00:00Z") { errors { field message } }'
        " er: webhookEventRetry(id: $id) { errors { field message } }"
        " ec: webhookEventCancel(id: $id) { errors { field message } }"
        f" v: webhookPreview(type: INVOICE, query: {json.dumps(QUERY)}, entityId: $id) {{ errors {{ field message }} }}"
        " }",
        id=garbage,
    )
    answers = body["data"]
    assert "errors" not in body
    for alias in ("d", "r", "t", "u"):
        assert answers[alias]["errors"] == [{"field": "id", "message": "webhook not found"}]
    assert answers["p"]["errors"] == [{"field": "webhookId", "message": "webhook not found"}]
    for alias in ("er", "ec"):
        assert answers[alias]["errors"] == [{"field": "id", "message": "event not found"}]
    assert answers["v"]["errors"][0]["field"] == "entityId"


@pytest.mark.parametrize("cursor", ["\0", "\ud800", "Y3Vyc29yOjE\ud800", "c" * 100_000])
async def test_a_cursor_that_is_no_cursor_is_a_short_clear_error(api: Api, cursor: str) -> None:
    body = await api.post("query($after: String) { invoices(after: $after) { edges { cursor } } }", after=cursor)
    [error] = body["errors"]
    assert error["message"].startswith("`after` is not a cursor from this API") and len(error["message"]) < 120


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (QUERY + " # \0", "query must not contain NUL characters"),
        (QUERY + " # \ud800", "query is not valid Unicode"),
        (QUERY + " #" * 60_000, "query is longer than 100000 characters"),
    ],
)
async def test_preview_refuses_the_queries_create_refuses(api: Api, query: str, message: str) -> None:
    preview = (
        "mutation($query: String!, $id: ID!) { webhookPreview(type: INVOICE, query: $query, entityId: $id) {"
        " body errors { field message } } }"
    )
    out = (await api.post(preview, query=query, id=to_global_id("Invoice", 1)))["data"]["webhookPreview"]
    assert out == {"body": None, "errors": [{"field": "query", "message": out["errors"][0]["message"]}]}
    assert out["errors"][0]["message"].startswith(message)
    created = (await api.post(CREATE, input={**VALID, "query": query}))["data"]["webhookCreate"]
    assert created["errors"] == out["errors"]

