"""The dashboard driving real deliveries, in a real headless Chromium (no network beyond
127.0.0.1): the real engine delivers to a real local receiver. A webhook created with the form
delivers, and its event's page shows the exact body the receiver got; "Send now" sends an event
that waits on its retry backoff. Screenshots go to tests/artifacts/ (dashboard-webhook.png and
dashboard-attempt.png; the README's docs/dashboard*.png are copies of them)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from app.config import Settings
from app.store.apikeys import create_key
from tests.browser.test_dashboard_chromium import ARTIFACTS
from tests.integration.test_dashboard import site
from tests.support.chromium import Page, browser_page
from tests.support.engine_harness import add_webhook, fast, running_engine, wait_until
from tests.support.live_server import serving
from tests.support.receivers import Receiver

QUERY = "query($id: ID!) { node(id: $id) { ... on Invoice { id status total { amount currencyCode } } } }"
INVOICE = 3
LOCAL = Settings(allow_private_targets=True)


async def _screenshot(page: Page, name: str) -> bytes:
    shot = base64.b64decode((await page.send("Page.captureScreenshot", format="png"))["data"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(shot)
    return shot


async def _fill(page: Page, values: dict[str, str]) -> None:
    for selector, value in values.items():
        await page.js(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")


async def _sign_in(page: Page, base_url: str, key: str) -> None:
    await page.send("Network.enable")  # Page.requests: every URL the browser asks for
    await page.loading("Page.navigate", url=base_url + "/dashboard/")
    await _fill(page, {"#key": key})
    await page.click("form[action$='/login'] button")


@pytest.mark.browser
async def test_a_webhook_created_in_the_form_delivers_and_its_request_body_is_shown(
    fixture_database_url: str,
) -> None:
    receiver = await Receiver(respond=lambda n: (200, {"X-Receipt": f"r-{n}"}, b'{"ok": true}')).start()
    try:
        async with running_engine(fixture_database_url) as run:
            seller = await run.pool.fetchval("SELECT seller_id FROM invoices WHERE id = $1", INVOICE)
            key = await create_key(run.pool, seller_id=seller, name="acme")
            async with serving(site(run.pool, LOCAL)) as base_url, browser_page(offline=True) as page:
                await _sign_in(page, base_url, key)
                # given: the form, filled in as a person would
                await page.click("a[href$='/webhooks/new']")
                await _fill(page, {
                    "#name": "ERP sync", "#url": receiver.url + "/hooks/invoices", "#query": QUERY,
                    "#headers": "Authorization: Bearer sk_live_from_the_form\nX-Tenant: acme",
                    "#entity_id": str(INVOICE),
                })  # fmt: skip
                # when: previewing the query against an invoice
                await page.click("button[value='preview']")
                preview = json.loads(str(await page.js("document.querySelector('#preview-body').innerText")))
                assert preview["payload"]["data"]["node"]["status"]
                # when: creating it
                await page.click("button[value='save']")
                assert "Webhook “ERP sync” created" in await page.text()
                secret = str(await page.js("document.querySelector('#secret').value"))
                # then: it delivers the next change, signed with the secret the page showed
                await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = $1", INVOICE)
                [got] = await receiver.wait_for(1)
                Verifier(secret).verify(got.body, got.headers)
                await wait_until(lambda: run.pool.fetchval("SELECT count(*) = 1 FROM webhook_attempts"))
                # and the event's page shows the exact body the receiver got, its headers masked
                await page.click(".created a[href*='/webhooks/']")
                await page.click("article.event a[href*='/events/']")
                shown = await page.js("document.querySelector('pre.request-body').innerText")
                headers = str(await page.js("document.querySelector('.request table.headers').innerText"))
                await _screenshot(page, "dashboard-attempt.png")
    finally:
        await receiver.stop()
    assert shown == got.body.decode()
    assert page.requests and all(urlsplit(url).hostname == "127.0.0.1" for url in page.requests)
    assert "sk_live_from_the_form" not in headers and "Bearer ••••••" in headers
    assert got.headers["webhook-signature"] not in headers and got.headers["webhook-id"] in headers


@pytest.mark.browser
async def test_send_now_sends_an_event_waiting_on_its_retry(fixture_database_url: str) -> None:
    # given: a receiver that fails once, and a retry backoff of an hour
    receiver = await Receiver(respond=lambda n: (503, {}, b"maintenance") if n == 1 else (200, {}, b"ok")).start()
    hour_ms = 3_600_000
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=hour_ms, retry_max_ms=hour_ms)) as run:
            seller = await run.pool.fetchval("SELECT seller_id FROM invoices WHERE id = $1", INVOICE)
            key = await create_key(run.pool, seller_id=seller, name="acme")
            hook, _ = await add_webhook(run.pool, receiver.url + "/hooks", seller_id=seller, name="Stock feed")
            await _history(run.pool, hook)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = $1", INVOICE)
            await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT attempts = 1 FROM webhook_events WHERE entity_id = 3"))
            async with serving(site(run.pool, LOCAL)) as base_url, browser_page(offline=True) as page:
                await _sign_in(page, base_url, key)
                await page.click(f"a[href$='/webhooks/{hook}']")
                assert "Attempt 2 due in" in await page.text()
                await _screenshot(page, "dashboard-webhook.png")
                # when: "Send now"
                await page.click("article.event form[action$='/send-now'] button")
                # then: the receiver gets it at once
                await receiver.wait_for(2)
                assert "Event due now" in await page.text()
                await wait_until(lambda: run.pool.fetchval("SELECT bool_and(status = 'delivered') FROM webhook_events"))
    finally:
        await receiver.stop()


async def _history(pool: asyncpg.Pool, hook: int) -> None:
    """A day of earlier attempts for the chart (on a ping event of their own): the screenshot
    shows what a day of traffic looks like."""
    event = await pool.fetchval(
        "INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, payload_hash,"
        " changed_at, created_at, finished_at) VALUES ('evt_history', $1, 'ping', 0, 'delivered', '{}', '\\x00',"
        " now() - interval '1 day', now() - interval '1 day', now() - interval '1 day') RETURNING id",
        hook,
    )
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code)"
        " SELECT $1, $2, $3::timestamptz - h * interval '1 hour' - m * interval '1 minute',"
        " 40 + (h * 7 + m * 13) % 90 + CASE WHEN h BETWEEN 7 AND 9 THEN 400 ELSE 0 END,"
        " CASE WHEN h BETWEEN 7 AND 9 AND m % 3 = 0 THEN 503 ELSE 200 END"
        " FROM generate_series(1, 23) h, generate_series(0, 59, 4 + (h % 5)) m",
        event,
        hook,
        now,
    )
