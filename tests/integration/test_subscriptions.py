"""The `webhookEvents` subscription over both websocket subprotocols (graphql-transport-ws and the
older graphql-ws): a real websocket client against the served GraphQL app, while rows change
through another connection (as a worker process would). Also the websocket hygiene: a deadline to
authenticate, malformed messages, and the open-subscription quota per key."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from app.api.asgi import HookqlGraphQL, graphql_app
from app.config import Settings
from app.store import db
from app.store.apikeys import create_key, hash_key
from tests.support.live_server import serving
from tests.support.logs import no_tracebacks

SUBSCRIPTION = """
subscription($webhookId: ID) {
  webhookEvents(webhookId: $webhookId) {
    id eventId webhookId event status sequence entityType entityId payload attempts
    latestAttempt { statusCode durationMs responseBody error }
  }
}
"""


def gid(type_name: str, id_: int) -> str:
    return base64.b64encode(f"{type_name}:{id_}".encode()).decode()


@asynccontextmanager
async def subscribed(
    base_url: str, key: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[websockets.ClientConnection]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        payload = {"query": SUBSCRIPTION, "variables": variables or {}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        yield ws


async def next_update(ws: websockets.ClientConnection, timeout_s: float = 5) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return dict(message["payload"]["data"]["webhookEvents"])


async def until_listening(pool: asyncpg.Pool) -> None:
    """The subscription is live once this server's feed has LISTENed on the channel."""
    for _ in range(200):
        if await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE 'LISTEN%hookql_event_updates%'"
        ):
            return
        await asyncio.sleep(0.025)
    raise TimeoutError("the subscription never started listening")


async def given_world(conn: asyncpg.Connection) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name in ("acme", "globex"):
        seller = await conn.fetchval("INSERT INTO sellers (name) VALUES ($1) RETURNING id", name)
        ids[f"{name}_seller"] = seller
        ids[f"{name}_hook"] = await conn.fetchval(
            "INSERT INTO webhooks (seller_id, name, url, entity_type, query, secret)"
            " VALUES ($1, $2, 'https://example.com/h', 'invoice', 'query { __typename }', 'whsec_x')"
            " RETURNING id",
            seller,
            name,
        )
    return ids


async def insert_event(conn: asyncpg.Connection, webhook_id: int, entity_id: int, sequence: int) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence,"
            " payload, payload_hash, changed_at) VALUES ($1, $2, 'invoice', $3, 'invoice.updated', $4,"
            " $5, '\\x00', now()) RETURNING id",
            f"evt_{webhook_id}_{entity_id}_{sequence}",
            webhook_id,
            entity_id,
            sequence,
            {"data": {"node": {"id": gid("Invoice", entity_id), "status": "PAID"}}},
        )
    )


def app(pool: asyncpg.Pool, settings: Settings | None = None) -> Starlette:
    return app_of(graphql_app(pool, settings or Settings()))


def app_of(graphql: HookqlGraphQL) -> Starlette:
    # Routes, not Mount("/graphql"): a Mount only matches "/graphql/…", and a websocket cannot follow
    # the redirect that HTTP requests get from "/graphql" to "/graphql/".
    return Starlette(routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)])


async def test_events_stream_as_they_are_recorded_and_attempted(
    pool: asyncpg.Pool, database_url: str
) -> None:
    async with pool.acquire() as conn:
        world = await given_world(conn)
        key = await create_key(conn, seller_id=world["acme_seller"], name="acme")
    worker = await db.connect(database_url)  # another process's connection writes the rows
    try:
        async with serving(app(pool)) as base_url, subscribed(base_url, key) as ws:
            await until_listening(pool)

            # when: an event is recorded for each seller's webhook
            await insert_event(worker, world["globex_hook"], 900, 1)
            event_id = await insert_event(worker, world["acme_hook"], 7, 1)
            # then: the seller's arrives, pending, with its payload; the other seller's does not
            created = await next_update(ws)
            assert created["id"] == gid("WebhookEvent", event_id)
            assert created["eventId"] == f"evt_{world['acme_hook']}_7_1"
            assert created["webhookId"] == gid("Webhook", world["acme_hook"])
            assert created["event"] == "invoice.updated"
            assert (created["status"], created["sequence"]) == ("PENDING", 1)
            assert created["entityType"] == "Invoice" and created["entityId"] == gid("Invoice", 7)
            assert created["payload"]["data"]["node"]["status"] == "PAID"
            assert created["latestAttempt"] is None

            # when: the dispatcher records a failed attempt, then a successful one
            async with worker.transaction():
                await worker.execute(
                    "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms,"
                    " status_code, response_body) VALUES ($1, $2, now(), 42, 503, 'busy')",
                    event_id,
                    world["acme_hook"],
                )
                await worker.execute("UPDATE webhook_events SET attempts = 1 WHERE id = $1", event_id)
            retrying = await next_update(ws)
            async with worker.transaction():
                await worker.execute(
                    "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms,"
                    " status_code) VALUES ($1, $2, now(), 12, 204)",
                    event_id,
                    world["acme_hook"],
                )
                await worker.execute(
                    "UPDATE webhook_events SET attempts = 2, status = 'delivered', finished_at = now()"
                    " WHERE id = $1",
                    event_id,
                )
            delivered = await next_update(ws)

            # then: one update per attempt, each with the latest attempt
            assert retrying["status"] == "PENDING" and retrying["attempts"] == 1
            assert retrying["latestAttempt"] == {
                "statusCode": 503,
                "durationMs": 42,
                "responseBody": "busy",
                "error": None,
            }
            assert delivered["status"] == "DELIVERED" and delivered["latestAttempt"]["statusCode"] == 204

            # and a lease (no visible change) sends nothing
            await worker.execute("UPDATE webhook_events SET leased_until = now() WHERE id = $1", event_id)
            await insert_event(worker, world["globex_hook"], 901, 2)
            marker = await insert_event(worker, world["acme_hook"], 8, 2)
            assert (await next_update(ws))["id"] == gid("WebhookEvent", marker)
    finally:
        await worker.close()


async def test_one_webhook_and_seller_isolation(pool: asyncpg.Pool, database_url: str) -> None:
    async with pool.acquire() as conn:
        world = await given_world(conn)
        second_hook = await conn.fetchval(
            "INSERT INTO webhooks (seller_id, name, url, entity_type, query, secret)"
            " VALUES ($1, 'second', 'https://example.com/2', 'variant', 'q', 'whsec_y') RETURNING id",
            world["acme_seller"],
        )
        acme_key = await create_key(conn, seller_id=world["acme_seller"], name="acme")
        operator_key = await create_key(conn, seller_id=None, name="ops")
    async with serving(app(pool)) as base_url:
        # a seller naming another seller's webhook gets "not found", like a missing one
        async with subscribed(base_url, acme_key, {"webhookId": gid("Webhook", world["globex_hook"])}) as ws:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] in ("error", "next")
            assert "webhook not found" in json.dumps(message)

        async with (
            subscribed(base_url, acme_key, {"webhookId": gid("Webhook", second_hook)}) as only_second,
            subscribed(base_url, operator_key) as everything,
        ):
            await until_listening(pool)
            async with pool.acquire() as conn:
                first = await insert_event(conn, world["acme_hook"], 1, 1)
                globex = await insert_event(conn, world["globex_hook"], 2, 1)
                second = await insert_event(conn, second_hook, 3, 1)
            # the filtered stream sees only its webhook's event
            assert (await next_update(only_second))["id"] == gid("WebhookEvent", second)
            # the operator sees every seller's
            seen = {(await next_update(everything))["id"] for _ in range(3)}
            assert seen == {gid("WebhookEvent", i) for i in (first, globex, second)}


async def test_a_bad_key_is_refused_at_connection_init(pool: asyncpg.Pool) -> None:
    async with serving(app(pool)) as base_url:
        url = base_url.replace("http://", "ws://") + "/graphql"
        protocols = [websockets.Subprotocol("graphql-transport-ws")]
        async with websockets.connect(url, subprotocols=protocols) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": "Bearer nope"}}
            await ws.send(json.dumps(init))
            try:
                message = await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code in (4401, 4403)
            else:
                raise AssertionError(f"expected the connection to be closed, got {message}")


# -- websocket hygiene ------------------------------------------------------------------------------

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


@dataclass
class Client:
    """A websocket speaking one of the two subprotocols, reduced to what these tests do."""

    ws: websockets.ClientConnection
    protocol: str

    @property
    def legacy(self) -> bool:
        return self.protocol == "graphql-ws"

    async def send(self, message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def init(self, key: str) -> None:
        await self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        assert (await self.receive())["type"] == "connection_ack"

    async def subscribe(self, op_id: str, variables: dict[str, Any] | None = None) -> None:
        payload = {"query": SUBSCRIPTION, "variables": variables or {}}
        await self.send({"id": op_id, "type": "start" if self.legacy else "subscribe", "payload": payload})

    async def complete(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "stop" if self.legacy else "complete"})

    async def receive(self, timeout_s: float = 5) -> dict[str, Any]:
        """The next message that is not a keep-alive."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
            if message["type"] not in ("ka", "ping", "pong"):
                return dict(message)

    async def until_done(self, op_id: str) -> list[dict[str, Any]]:
        """The messages for one operation, up to its last (`complete`, or `error`)."""
        messages = [await self.receive()]
        while messages[-1]["type"] not in ("complete", "error"):
            messages.append(await self.receive())
        assert {m["id"] for m in messages} == {op_id}, messages
        return messages

    async def closed_with(self, timeout_s: float = 10) -> int:
        """The close code, once the server closes the connection."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout_s)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server closed without a close frame"
            return closed.rcvd.code


@asynccontextmanager
async def connected(base_url: str, protocol: str, key: str | None = None) -> AsyncIterator[Client]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol(protocol)]) as ws:
        client = Client(ws, protocol)
        if key is not None:
            await client.init(key)
        yield client


async def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_that_never_authenticates_is_closed_at_the_deadline(
    pool: asyncpg.Pool, protocol: str
) -> None:
    async with serving(app(pool, Settings(ws_auth_timeout_s=1))) as base_url, connected(base_url, protocol) as idle:
        opened = time.monotonic()
        code = await idle.closed_with()
        waited_s = time.monotonic() - opened
    assert code == 4408
    assert 0.9 <= waited_s < 4  # the deadline is 1 s: closed then, not at some later sweep


async def test_an_authenticated_graphql_ws_connection_outlives_the_deadline(
    pool: asyncpg.Pool, database_url: str
) -> None:
    async with pool.acquire() as conn:
        world = await given_world(conn)
        key = await create_key(conn, seller_id=world["acme_seller"], name="acme")
    async with (
        serving(app(pool, Settings(ws_auth_timeout_s=1))) as base_url,
        connected(base_url, "graphql-ws", key) as live,
        connected(base_url, "graphql-ws") as idle,
    ):
        await live.subscribe("1")
        # the idle connection, opened after the live one, is closed at its deadline ...
        assert await idle.closed_with() == 4408
        # ... by when the live one's has passed too: it still streams
        await until_listening(pool)
        async with pool.acquire() as conn:
            event_id = await insert_event(conn, world["acme_hook"], 7, 1)
        message = await live.receive()
        assert message["type"] == "data" and message["id"] == "1", message
        assert message["payload"]["data"]["webhookEvents"]["id"] == gid("WebhookEvent", event_id)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_operation_runs_before_the_connection_is_authenticated(
    pool: asyncpg.Pool, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    with no_tracebacks(caplog):
        async with serving(app(pool)) as base_url, connected(base_url, protocol) as client:
            await client.subscribe("1")
            assert await client.closed_with() == 4401


async def test_graphql_ws_takes_one_connection_init_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await create_key(conn, seller_id=None, name="first")
        second = await create_key(conn, seller_id=None, name="second")
    async with serving(app(pool)) as base_url, connected(base_url, "graphql-ws", first) as client:
        await client.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {second}"}})
        assert await client.closed_with() == 4429


MALFORMED = [
    5,
    [],
    "connection_init",
    None,
    {"no": "type"},
    {"type": 5},
    {"type": "x" * 200},  # strawberry would echo it in a close reason, which holds 123 bytes at most
    {"type": "é" * 70, "id": "1"},
    {"type": "subscribe", "payload": {"query": "subscription { webhookEvents { id } }"}},  # no id
    {"type": "start", "id": 1, "payload": {"query": "subscription { webhookEvents { id } }"}},
    {"type": "subscribe", "id": "x" * 10_000, "payload": {"query": "subscription { webhookEvents { id } }"}},
    {"type": "subscribe", "id": "1"},
    {"type": "start", "id": "1", "payload": 5},
    {"type": "subscribe", "id": "1", "payload": {"query": 5}},
    {"type": "start", "id": "1", "payload": {"query": "subscription { webhookEvents { id } }", "variables": [1]}},
    {"type": "subscribe", "id": "1", "payload": {"query": "subscription { webhookEvents { id } }", "operationName": 5}},
    {"type": "complete"},
    {"type": "stop", "id": {"a": 1}},
]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws"])
@pytest.mark.parametrize(
    "payload",
    [
        {"query": "subscription { " + "x" * 300 + " "},  # a syntax error that quotes the token
        {"query": "subscription A { webhookEvents { id } }", "operationName": "B" * 300},
        {"query": "subscription { \ud800" + "é" * 100},
    ],
)
async def test_a_close_reason_that_quotes_the_client_is_cut_to_fit(
    pool: asyncpg.Pool, protocol: str, payload: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ops")
    with no_tracebacks(caplog):
        async with serving(app(pool)) as base_url, connected(base_url, protocol, key) as client:
            await client.send({"id": "1", "type": "subscribe", "payload": payload})
            try:
                answer = await client.until_done("1")  # an operation error is an answer too
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4400
                assert len(closed.rcvd.reason.encode()) <= 123
            else:
                assert answer[-1]["type"] in ("error", "complete")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("message", MALFORMED, ids=[json.dumps(m)[:40] for m in MALFORMED])
async def test_a_malformed_message_closes_the_connection_with_a_reason_and_no_traceback(
    pool: asyncpg.Pool, protocol: str, message: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ops")
    with no_tracebacks(caplog):
        async with serving(app(pool)) as base_url, connected(base_url, protocol, key) as client:
            await client.send(message)
            assert await client.closed_with() == 4400


async def test_webhook_ids_that_are_not_webhook_ids_are_not_found(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ops")
    garbage = [
        base64.b64encode("Webhook:1²".encode()).decode(),  # a digit to str.isdigit(), not to int()
        "\0",
        "\ud800",
        "V2ViaG9vazox" * 1000,
        gid("Invoice", 1),
    ]
    async with serving(app(pool)) as base_url, connected(base_url, "graphql-transport-ws", key) as client:
        for i, webhook_id in enumerate(garbage):
            await client.subscribe(str(i), {"webhookId": webhook_id})
            answer = await client.until_done(str(i))
            assert "webhook not found" in json.dumps(answer), answer


async def test_a_key_holds_at_most_its_quota_of_subscriptions_across_connections(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        world = await given_world(conn)
        key = await create_key(conn, seller_id=world["acme_seller"], name="acme")
        other_key = await create_key(conn, seller_id=world["acme_seller"], name="acme too")
    graphql = graphql_app(pool, Settings(key_max_subscriptions=2))

    def held(k: str) -> int:
        return graphql.subscription_quota.open_for(hash_key(k))

    with no_tracebacks(caplog):
        async with serving(app_of(graphql)) as base_url:
            async with (
                connected(base_url, "graphql-transport-ws", key) as first,
                connected(base_url, "graphql-ws", key) as second,
                connected(base_url, "graphql-transport-ws", other_key) as other,
            ):
                # given: the key holds its quota, on one connection
                await first.subscribe("a")
                await first.subscribe("b")
                await until(lambda: held(key) == 2)

                # when: it asks for one more there, and one on its other connection
                await first.subscribe("c")
                await second.subscribe("d")
                # then: each is refused with a clear error
                for client, op_id in ((first, "c"), (second, "d")):
                    refusal = json.dumps(await client.until_done(op_id))
                    assert "subscription quota reached: this API key has 2 subscriptions open" in refusal, refusal
                    assert "at most 2 (HOOKQL_KEY_MAX_SUBSCRIPTIONS)" in refusal
                # and another key of the same seller is not held back
                await other.subscribe("e")
                await until(lambda: held(other_key) == 1)
                assert held(key) == 2

                # and the subscriptions held keep running
                await until_listening(pool)
                async with pool.acquire() as conn:
                    event_id = await insert_event(conn, world["acme_hook"], 7, 1)
                updates = [await first.receive(), await first.receive(), await other.receive()]
                assert sorted(u["id"] for u in updates) == ["a", "b", "e"]
                assert {u["payload"]["data"]["webhookEvents"]["id"] for u in updates} == {gid("WebhookEvent", event_id)}

                # when: one ends, its slot is free for the key's next subscription, on any connection
                await first.complete("a")
                await until(lambda: held(key) == 1)
                await second.subscribe("f")
                await until(lambda: held(key) == 2)

            # when the connections close, every slot they held is given back (nothing leaks) ...
            await until(lambda: held(key) == 0 and held(other_key) == 0)
            # ... and the key may open its whole quota again
            async with connected(base_url, "graphql-transport-ws", key) as again:
                await again.subscribe("g")
                await again.subscribe("h")
                await until(lambda: held(key) == 2)
