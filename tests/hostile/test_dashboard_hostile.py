"""The dashboard's new routes against a hostile seller (issue #13): another seller's webhook,
event and attempt ids (numeric and GraphQL), malformed ids, markup in every text an attacker
controls (webhook names, header values, request and response bodies, response headers),
oversized or malformed forms, and a receiver that hangs. Each gets the same "No such …" page as a missing id, or a clear
refusal; nothing changes, and nothing is logged with a traceback.

Runs against the dashboard served in-process (integration/test_dashboard.py's site and seed)."""

from __future__ import annotations

import logging
import time

import aiohttp
import asyncpg
import pytest

from app.config import Settings
from app.policy.ids import encode
from app.store.apikeys import create_key
from tests.integration.test_dashboard import Seeded, client, post, seed, sign_in, site
from tests.support.engine_harness import add_webhook, fast, running_engine, wait_until
from tests.support.live_server import serving
from tests.support.receivers import HangingReceiver

XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


async def _snapshot(pool: asyncpg.Pool) -> tuple[object, ...]:
    """Everything a route could change."""
    return (
        await pool.fetch("SELECT * FROM webhooks ORDER BY id"),
        await pool.fetch("SELECT id, status, next_attempt_at, attempts FROM webhook_events ORDER BY id"),
        await pool.fetchval("SELECT count(*) FROM webhook_attempts"),
    )


async def _globex(pool: asyncpg.Pool, given: Seeded) -> tuple[int, int]:
    event = await pool.fetchval("SELECT id FROM webhook_events WHERE webhook_id = $1", given.globex_hook)
    attempt = await pool.fetchval("SELECT id FROM webhook_attempts WHERE event_id = $1", event)
    await pool.execute("UPDATE webhook_attempts SET request_body = 'globex body' WHERE id = $1", attempt)
    return int(event), int(attempt)


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]


async def _text(response: aiohttp.ClientResponse) -> str:
    async with response:
        return await response.text()


async def test_another_sellers_ids_get_the_missing_page_on_every_route(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    globex_event, globex_attempt = await _globex(pool, given)
    before = await _snapshot(pool)
    missing_webhook, missing_event = 10_000, 10_000
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)

        async def get(path: str) -> tuple[int, str]:
            async with http.get(base_url + "/dashboard" + path) as r:
                return r.status, await r.text()

        async def page_of(path: str, action: str | None = None) -> tuple[int, str]:
            if action is None:
                return await get(path)
            response = await post(
                http, base_url, path + action, given.acme_key,
                name="x", url="https://a.example", type="invoice", query="q", do="save",
            )  # fmt: skip
            return response.status, await _text(response)

        for webhook in (given.globex_hook, encode("Webhook", given.globex_hook)):
            for path, action in (
                (f"/webhooks/{webhook}", None),
                (f"/webhooks/{webhook}/edit", None),
                (f"/webhooks/{webhook}", "/edit"),
                (f"/webhooks/{webhook}", "/disable"),
            ):
                status, page = await page_of(path, action)
                _, missing_page = await page_of(path.replace(str(webhook), str(missing_webhook)), action)
                assert status == 404 and "No such webhook" in page, (path, action)
                assert page == missing_page  # no existence leak
                assert "Globex" not in page
        for event in (globex_event, encode("WebhookEvent", globex_event)):
            status, page = await get(f"/events/{event}")
            assert status == 404 and "No such event" in page and "globex secret body" not in page
            assert page == (await get(f"/events/{missing_event}"))[1]
            for action in ("send-now", "resend", "retry", "cancel"):
                response = await post(http, base_url, f"/events/{event}/{action}", given.acme_key)
                assert response.status == 404 and "No such event" in await _text(response)
        for attempt in (globex_attempt, encode("WebhookAttempt", globex_attempt)):
            status, page = await get(f"/attempts/{attempt}/body")
            assert status == 404 and "globex body" not in page
    assert await _snapshot(pool) == before
    _no_traceback(caplog)


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "-1",
        "0",
        "1e3",
        "１２",  # full-width digits
        "99999999999999999999999",
        encode("Seller", 1),  # a valid ID of another type
        "V2ViaG9vazphYmM=",  # Webhook:abc
        "V2ViaG9vazox%00",
        "%F0%9F%92%A5",
        "A" * 300,
    ],
)
async def test_malformed_ids_are_missing_ids(pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, raw: str) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    before = await _snapshot(pool)
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)
        for path in (f"/webhooks/{raw}", f"/webhooks/{raw}/edit", f"/events/{raw}", f"/attempts/{raw}/body"):
            async with http.get(base_url + "/dashboard" + path) as r:
                assert r.status == 404 and "No such" in await r.text(), path
        for path in (f"/webhooks/{raw}/edit", f"/events/{raw}/send-now", f"/events/{raw}/resend"):
            response = await post(http, base_url, path, given.acme_key)
            assert response.status == 404, path
    assert await _snapshot(pool) == before
    _no_traceback(caplog)


async def test_markup_anywhere_is_shown_as_text(pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    await pool.execute(
        "UPDATE webhooks SET name = $1, headers = $2 WHERE id = $3",
        XSS,
        [{"name": "X-Note", "value": XSS}],
        given.erp_hook,
    )
    await pool.execute(
        "UPDATE webhook_attempts SET response_body = $1, response_headers = $2, request_method = 'POST',"
        " request_url = $3, request_headers = $4, request_body = $5 WHERE event_id = $6",
        XSS,
        {"X-Evil": XSS},
        "https://erp.example/?q=" + XSS,
        [["X-Note", XSS]],
        XSS.encode(),
        given.delivered,
    )
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)
        pages = []
        hook = given.erp_hook
        for path in ("/", f"/webhooks/{hook}", f"/webhooks/{hook}/edit", f"/events/{given.delivered}"):
            async with http.get(base_url + "/dashboard" + path) as r:
                assert r.status == 200, path
                pages.append(await r.text())
        # and a refused form echoes what was typed, escaped
        response = await post(
            http, base_url, "/webhooks/new", given.acme_key,
            name=XSS, url=XSS, type="invoice", query=XSS, headers=f"X-A: {XSS}", do="save",
        )  # fmt: skip
        assert response.status == 400
        pages.append(await _text(response))
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[3]  # the request body, as text
    _no_traceback(caplog)


async def test_oversized_and_malformed_forms_change_nothing(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        given = await seed(conn)
    before = await _snapshot(pool)
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, given.acme_key)

        async def create(**fields: str) -> tuple[int, str]:
            response = await post(http, base_url, "/webhooks/new", given.acme_key, do="save", **fields)
            return response.status, await _text(response)

        base = {"name": "n", "url": "https://a.example/in", "type": "invoice", "method": "POST", "format": "json"}
        # past the form's size: refused before it is read further
        status, page = await create(**{**base, "query": "x" * 70_000})
        assert status == 413 and "larger than 64 KiB" in page
        # within it, each oversized field is the API's clear error beside the field
        status, page = await create(**{**base, "name": "n" * 5000})
        assert status == 400 and "name must be 1-200 characters" in page
        status, page = await create(**{**base, "headers": "\n".join(f"X-H{i}: {'v' * 400}" for i in range(30))})
        assert status == 400 and "at most 20 headers" in page
        status, page = await create(**{**base, "url": "https://a.example/" + "p" * 3000})
        assert status == 400 and 'id="url-error"' in page
        status, page = await create(**{**base, "query": "query { a }\0"})
        assert status == 400 and "NUL" in page
        status, page = await create(**{**base, "type": "admin", "method": "DELETE"})
        assert status == 400 and 'id="type-error"' in page
        # more fields than any form has, a form that is not urlencoded, no CSRF token
        many = [("csrf", "x")] + [(f"f{i}", "v") for i in range(100)]
        async with http.post(base_url + "/dashboard/webhooks/new", data=many, headers={"Origin": base_url}) as r:
            assert r.status == 403
        async with http.post(
            base_url + "/dashboard/webhooks/new", json={"name": "n"}, headers={"Origin": base_url}
        ) as r:
            assert r.status == 403
        async with http.post(
            base_url + "/dashboard/events/1/send-now", data={"csrf": "wrong"}, headers={"Origin": base_url}
        ) as r:
            assert r.status == 403
        # an oversized preview entity id is an error, not a crash
        response = await post(
            http, base_url, "/webhooks/new", given.acme_key,
            **base, query="query($id: ID!) { node(id: $id) { id } }", entity_id="9" * 500, do="preview",
        )  # fmt: skip
        assert response.status == 400 and "entityId is not a Invoice ID" in await _text(response)
    assert await _snapshot(pool) == before
    _no_traceback(caplog)



async def test_a_hanging_receiver_holds_up_no_page_and_send_now_says_it_is_in_flight(
    fixture_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = HangingReceiver()
    await receiver.start()
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=3_600_000, retry_max_ms=3_600_000)) as run:
            seller = await run.pool.fetchval("SELECT seller_id FROM invoices WHERE id = 3")
            key = await create_key(run.pool, seller_id=seller, name="acme")
            hook, _ = await add_webhook(run.pool, receiver.url, seller_id=seller, timeout_seconds=30)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await wait_until(lambda: receiver.in_flight == 1)
            event = await run.pool.fetchval("SELECT id FROM webhook_events WHERE webhook_id = $1", hook)
            async with serving(site(run.pool, Settings(allow_private_targets=True))) as base_url, client() as http:
                await sign_in(http, base_url, key)
                started = time.monotonic()
                for path in (f"/webhooks/{hook}", f"/events/{event}"):
                    async with http.get(base_url + "/dashboard" + path) as r:
                        assert r.status == 200
                response = await post(http, base_url, f"/events/{event}/send-now", key, back="event")
                async with http.get(base_url + response.headers["Location"]) as r:
                    assert "Not sent now: it is being sent right now." in await r.text()
                assert time.monotonic() - started < 5  # none of it waited for the receiver
            await receiver.release()
            # The 503 is recorded as one attempt, and the next waits its backoff (up to an hour here).
            recorded = "SELECT attempts = 1 AND status = 'pending' FROM webhook_events WHERE id = $1"
            await wait_until(lambda: run.pool.fetchval(recorded, event))
    finally:
        await receiver.release()
        await receiver.stop()
    _no_traceback(caplog)
