"""/dashboard in a real headless Chromium driven over the DevTools protocol (sign in, browse,
filter, retry, cancel, disable), which also writes a screenshot to tests/artifacts/dashboard.png.
The seeded world and the served site are integration/test_dashboard.py's."""

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
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets

from tests.integration.test_dashboard import seed, site
from tests.support.live_server import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


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

