"""/dashboard end to end: real HTTP against a served app (the same site in a real headless
Chromium: browser/test_dashboard_chromium.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import aiohttp
import asyncpg
from starlette.applications import Starlette
from starlette.routing import Mount

from app.config import Settings
from app.store.apikeys import create_key
from app.web.dashboard import csrf_token, dashboard_app
from tests.support.live_server import serving


@dataclass
class Seeded:
    acme_key: str
    operator_key: str
    erp_hook: int
    stock_hook: int
    globex_hook: int
    delivered: int
    failed: int
    pending: int


async def seed(conn: asyncpg.Connection) -> Seeded:
    """Two sellers' webhooks with events in every interesting state, written as the engine would."""
    acme = await conn.fetchval("INSERT INTO sellers (name) VALUES ('Acme Outdoor') RETURNING id")
    globex = await conn.fetchval("INSERT INTO sellers (name) VALUES ('Globex') RETURNING id")

    async def webhook(seller: int, name: str, url: str, entity: str, reason: str | None = None) -> int:
        return int(
            await conn.fetchval(
                "INSERT INTO webhooks (seller_id, name, url, entity_type, query, secret, enabled,"
                " disabled_reason) VALUES ($1, $2, $3, $4, 'query($id: ID!) { node(id: $id) { id } }',"
                " 'whsec_test', $5, $6) RETURNING id",
                seller,
                name,
                url,
                entity,
                reason is None,
                reason,
            )
        )

    erp = await webhook(acme, "ERP sync", "https://erp.acme.example/hooks/invoices", "invoice")
    stock = await webhook(
        acme, "Stock feed", "https://feeds.acme.example/stock", "variant", "receiver answered 410 Gone"
    )
    globex_hook = await webhook(globex, "Globex books", "https://books.globex.example/in", "invoice")

    sequence = itertools.count(1)

    async def event(hook: int, entity_id: int, status: str, attempts: list[tuple[int | None, str]]) -> int:
        event_id = int(
            await conn.fetchval(
                "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence,"
                " status, payload, payload_hash, changed_at, attempts, next_attempt_at)"
                " VALUES ('evt_' || md5(random()::text), $1, 'invoice', $2, 'invoice.updated', $3, $4,"
                " '{}', '\\x00', now() - interval '2 minutes', $5, now() + interval '40 seconds')"
                " RETURNING id",
                hook,
                entity_id,
                next(sequence),
                status,
                len(attempts),
            )
        )
        for n, (code, body) in enumerate(attempts):
            await conn.execute(
                "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code,"
                " response_body, error) VALUES ($1, $2, now() - $3 * interval '10 seconds', $4, $5, $6, $7)",
                event_id,
                hook,
                len(attempts) - n,
                120 + 37 * n,
                code,
                body if code else "",
                None if code else body,
            )
        return event_id

    delivered = await event(erp, 101, "delivered", [(200, '{"received": true}')])
    failed = await event(
        erp,
        102,
        "failed",
        [(500, "<h1>Internal Server Error</h1>"), (None, "connection refused"), (502, "Bad Gateway")],
    )
    pending = await event(erp, 103, "pending", [(503, "Service Unavailable, retry later")])
    await event(erp, 104, "skipped", [])
    await event(globex_hook, 900, "failed", [(500, "globex secret body")])
    return Seeded(
        acme_key=await create_key(conn, seller_id=acme, name="acme"),
        operator_key=await create_key(conn, seller_id=None, name="ops"),
        erp_hook=erp,
        stock_hook=stock,
        globex_hook=globex_hook,
        delivered=delivered,
        failed=failed,
        pending=pending,
    )


def site(pool: asyncpg.Pool, settings: Settings | None = None) -> Starlette:
    return Starlette(routes=[Mount("/dashboard", dashboard_app(pool, settings or Settings()))])


def client() -> aiohttp.ClientSession:
    # unsafe=True: aiohttp ignores cookies set by IP-address hosts (127.0.0.1) otherwise.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, base_url: str, key: str) -> aiohttp.ClientResponse:
    return await http.post(
        base_url + "/dashboard/login", data={"key": key}, allow_redirects=False, headers={"Origin": base_url}
    )


async def post(
    http: aiohttp.ClientSession, base_url: str, path: str, key: str, **fields: str | list[str]
) -> aiohttp.ClientResponse:
    """A dashboard form POST as a browser sends it: same origin, with the CSRF token."""
    data = [("csrf", csrf_token(key))]
    for name, value in fields.items():
        data += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    url = base_url + "/dashboard" + path
    return await http.post(url, data=data, headers={"Origin": base_url}, allow_redirects=False)


# --- HTTP level ---------------------------------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_cookie_and_lists_own_webhooks(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    async with serving(site(pool)) as base_url, client() as http:
        # given: not signed in, the page is the sign-in form
        async with http.get(base_url + "/dashboard/") as response:
            assert 'name="key"' in await response.text()
        # when: signing in with a seller key
        response = await sign_in(http, base_url, given.acme_key)
        # then: a redirect with an HttpOnly, SameSite=Strict cookie scoped to the dashboard
        assert response.status == 303
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard/" in cookie
        async with http.get(base_url + "/dashboard/") as response:
            page = await response.text()
            assert response.headers["X-Frame-Options"] == "DENY"
        assert "ERP sync" in page and "Stock feed" in page and "receiver answered 410 Gone" in page
        assert "Globex" not in page  # another seller's webhooks are invisible
        # and another seller's webhook page is a plain 404
        async with http.get(f"{base_url}/dashboard/webhooks/{given.globex_hook}") as response:
            assert response.status == 404
            assert "globex secret body" not in await response.text()


async def test_wrong_key_is_refused(pool: asyncpg.Pool) -> None:
    async with serving(site(pool)) as base_url, client() as http:
        response = await sign_in(http, base_url, "hk_not_a_key")
        assert response.status == 401
        assert "not valid" in await response.text()
        assert "Set-Cookie" not in response.headers


async def test_operator_sees_every_seller(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.operator_key)
        async with http.get(base_url + "/dashboard/") as response:
            page = await response.text()
    assert "ERP sync" in page and "Globex books" in page


async def test_posts_without_the_csrf_token_or_cross_site_change_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)
        url = f"{base_url}/dashboard/webhooks/{given.erp_hook}/disable"
        no_token = await http.post(url, data={}, headers={"Origin": base_url}, allow_redirects=False)
        cross_site = await http.post(
            url,
            data={"csrf": csrf_token(given.acme_key)},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        )
    assert no_token.status == 403 and cross_site.status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT enabled FROM webhooks WHERE id = $1", given.erp_hook)


async def test_seller_cannot_act_on_another_sellers_event(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
        globex_event = await conn.fetchval(
            "SELECT id FROM webhook_events WHERE webhook_id = $1", given.globex_hook
        )
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)
        response = await http.post(
            f"{base_url}/dashboard/events/{globex_event}/retry",
            data={"csrf": csrf_token(given.acme_key)},
            headers={"Origin": base_url},
            allow_redirects=False,
        )
    assert response.status == 404
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM webhook_events WHERE id = $1", globex_event)
    assert status == "failed"
