"""/dashboard in a real headless Chromium (tests/support/chromium.py) driven over the DevTools
protocol (sign in, browse, filter, retry, cancel, disable), which also writes a screenshot to
tests/artifacts/dashboard.png. The seeded world and the served site are integration/test_dashboard.py's."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_dashboard import seed, site
from tests.support.chromium import browser_page
from tests.support.live_server import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


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

