"""/dashboard end to end: real HTTP against a served app, and a real headless Chromium driven over
the DevTools protocol (sign in, browse, filter, retry, disable), which also writes a screenshot to
tests/artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Mount

from app.config import Settings
from app.store.apikeys import create_key
from app.web.dashboard import csrf_token, dashboard_app
from tests.support.live_server import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


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


def site(pool: asyncpg.Pool) -> Starlette:
    return Starlette(routes=[Mount("/dashboard", dashboard_app(pool, Settings()))])


def client() -> aiohttp.ClientSession:
    # unsafe=True: aiohttp ignores cookies set by IP-address hosts (127.0.0.1) otherwise.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, base_url: str, key: str) -> aiohttp.ClientResponse:
    return await http.post(
        base_url + "/dashboard/login", data={"key": key}, allow_redirects=False, headers={"Origin": base_url}
    )


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


# --- in a real browser ----------------------------------------------------------------------------


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loads = 0
        self._load_event = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._waiting.pop(message["id"])
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message.get("result", {}))
            elif message.get("method") == "Page.loadEventFired":
                self._loads += 1
                self._load_event.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 15)

    async def loading(self, method: str, **params: Any) -> None:
        """Run a call that makes the page load a new document, and wait for it to finish loading."""
        before = self._loads
        await self.send(method, **params)
        async with asyncio.timeout(15):
            while self._loads == before:
                self._load_event.clear()
                await self._load_event.wait()

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"])
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        script = f"document.querySelector({json.dumps(selector)}).click()"
        await self.loading("Runtime.evaluate", expression=script)

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium/chrome executable on PATH (Debian: apt-get install -y chromium)")
    # Chromium's helper processes may still be flushing the profile as the directory goes.
    with tempfile.TemporaryDirectory(prefix="hookql-chromium-", ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            executable,
            "--headless",
            "--no-sandbox",  # containers and CI runners usually lack user namespaces
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its helpers too
        )
        try:
            page_url = await _first_page_websocket(Path(profile) / "DevToolsActivePort")
            ws = await websockets.connect(page_url, max_size=None)
            page = Page(ws)
            try:
                await page.send("Page.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                await page.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


def _devtools_port(port_file: Path) -> int | None:
    text = port_file.read_text() if port_file.exists() else ""
    return int(text.split()[0]) if text.strip() else None


async def _first_page_websocket(port_file: Path) -> str:
    """Chromium writes its DevTools port into the profile once it listens; then list its pages."""
    for _ in range(600):
        port = _devtools_port(port_file)
        if port:
            break
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError("chromium did not open its DevTools port within 30 s")
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            await asyncio.sleep(0.05)
    raise TimeoutError("chromium opened no page")


@pytest.mark.browser
async def test_dashboard_in_chromium(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    async with serving(site(pool)) as base_url, browser_page() as page:
        # given: the sign-in page
        await page.loading("Page.navigate", url=base_url + "/dashboard/")
        assert "Sign in" in await page.text()

        # when: typing the seller's key and submitting the form
        await page.js(f"document.querySelector('#key').value = {json.dumps(given.acme_key)}")
        await page.click("form[action$='/login'] button")

        # then: the seller's webhooks, with health, and nothing of the other seller
        listing = await page.text()
        assert "ERP sync" in listing and "Stock feed" in listing
        assert "Disabled: receiver answered 410 Gone" in listing
        assert "Globex" not in listing
        # the key is in an HttpOnly cookie: page scripts cannot read it
        assert given.acme_key not in str(await page.js("document.cookie"))
        erp_row = await page.js(
            f"document.querySelector('tr[data-webhook-id=\"{given.erp_hook}\"]').innerText"
        )
        assert "20.0% of 5" in erp_row  # 1 of the 5 attempts in the last 24 h answered 2xx
        assert "1" in erp_row  # backlog: the pending event

        # when: opening the webhook
        await page.click(f"a[href$='/webhooks/{given.erp_hook}']")
        detail = await page.text()
        # then: events with their attempts: status codes, durations, excerpts and errors
        for expected in ("delivered", "failed", "pending", "skipped", "connection refused", "157 ms"):
            assert expected in detail, expected
        assert "Internal Server Error" in detail
        ARTIFACTS.mkdir(exist_ok=True)
        shot = await page.send("Page.captureScreenshot", format="png")
        (ARTIFACTS / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))

        # when: filtering by status
        await page.js("document.querySelector('#status').value = 'failed'")
        await page.click("form.filter button")
        # then: only failed events remain
        statuses = await page.js("[...document.querySelectorAll('article.event')].map(e => e.dataset.status)")
        assert statuses == ["failed"]

        # when: retrying the failed event
        await page.click(f"article[data-event-id=\"{given.failed}\"] form[action$='/retry'] button")
        async with pool.acquire() as conn:
            retried = await conn.fetchval("SELECT status FROM webhook_events WHERE id = $1", given.failed)
        assert retried == "pending"
        assert "status=failed" in str(await page.js("location.search"))  # the filter is kept

        # when: cancelling the pending event (unfiltered view)
        await page.loading("Page.navigate", url=f"{base_url}/dashboard/webhooks/{given.erp_hook}")
        await page.click(f"article[data-event-id=\"{given.pending}\"] form[action$='/cancel'] button")
        async with pool.acquire() as conn:
            cancelled = await conn.fetchval("SELECT status FROM webhook_events WHERE id = $1", given.pending)
        assert cancelled == "cancelled"

        # when: disabling the webhook, then enabling it again
        await page.click("section.summary form[action$='/disable'] button")
        async with pool.acquire() as conn:
            assert not await conn.fetchval("SELECT enabled FROM webhooks WHERE id = $1", given.erp_hook)
        await page.click("section.summary form[action$='/enable'] button")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT enabled FROM webhooks WHERE id = $1", given.erp_hook)

        # when: signing out, the dashboard asks for a key again
        await page.click("form[action$='/logout'] button")
        assert "Sign in" in await page.text()
    assert len(base64.b64decode(shot["data"])) > 10_000
