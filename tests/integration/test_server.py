"""The HTTP surface as a client sees it: keys, errors as JSON, GraphiQL, health, metrics."""

import aiohttp
import asyncpg

from app.config import Settings
from app.store.apikeys import create_key
from app.transport.http import Transport
from app.web.server import create_app
from tests.support.live_server import serving


async def test_http_contract(fixture_pool: asyncpg.Pool) -> None:
    async with fixture_pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="t")
    async with (
        Transport() as transport,
        serving(create_app(Settings(), fixture_pool, transport)) as base,
        aiohttp.ClientSession() as http,
    ):
        graphql = base + "/graphql"
        auth = {"Authorization": f"Bearer {key}"}
        query = {"query": '{ invoice(id: "SW52b2ljZTox") { legacyId } }'}

        async with http.post(graphql, json=query) as r:
            assert r.status == 401 and (await r.json())["errors"][0]["message"].startswith("missing API key")
        async with http.post(graphql, json=query, headers={"Authorization": "Bearer hk_wrong"}) as r:
            assert r.status == 401 and (await r.json()) == {"errors": [{"message": "invalid API key"}]}
        async with http.post(graphql, json=query, headers=auth) as r:
            body = await r.json()
            assert r.status == 200 and body["data"] == {"invoice": {"legacyId": 1}} and "errors" not in body
            # every answer says what its document cost and what the key's bucket holds (Shopify's shape)
            cost = body["extensions"]["cost"]
            assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (2, 2)
            assert cost["throttleStatus"]["maximumAvailable"] == Settings().operator_cost_bucket
        async with http.post(graphql, data=b"{not json", headers={**auth, "Content-Type": "application/json"}) as r:
            assert r.status == 400 and "errors" in await r.json()
        async with http.post(graphql, json={"query": "{ invoice(id: "}, headers=auth) as r:
            assert r.status == 400 and "Syntax Error" in (await r.json())["errors"][0]["message"]
        async with http.post(graphql, json={"query": "{ nope }"}, headers=auth) as r:
            assert r.status == 400 and "Cannot query field" in (await r.json())["errors"][0]["message"]
        async with http.get(graphql, headers={"Accept": "text/html"}) as r:
            assert r.status == 200 and "GraphiQL" in await r.text()
        async with http.get(base + "/healthz") as r:
            assert r.status == 200 and (await r.json()) == {"status": "ok"}
        async with http.get(base + "/metrics") as r:
            assert r.status == 200 and "hookql_backlog_events" in await r.text()


async def test_health_turns_503_when_the_database_is_gone(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    async with (
        Transport() as transport,
        serving(create_app(Settings(), pool, transport)) as base,
        aiohttp.ClientSession() as http,
    ):
        await pool.close()
        async with http.get(base + "/healthz") as r:
            assert r.status == 503 and (await r.json())["status"] == "unavailable"
