"""The `webhookEvents` subscription over graphql-transport-ws: a real websocket client against the
served GraphQL app, while rows change through another connection (as a worker process would)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import websockets
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from app import db
from app.api.asgi import graphql_app
from app.apikeys import create_key
from app.config import Settings
from tests.live_server import serving

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


def app(pool: asyncpg.Pool) -> Starlette:
    # Routes, not Mount("/graphql"): a Mount only matches "/graphql/…", and a websocket cannot follow
    # the redirect that HTTP requests get from "/graphql" to "/graphql/".
    graphql = graphql_app(pool, Settings())
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
