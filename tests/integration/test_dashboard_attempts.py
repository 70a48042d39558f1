"""What the dashboard shows of an attempt, end to end: the real engine delivers to a real local
receiver, and the dashboard's event page shows the request exactly as the receiver got it (body
bytes, headers, secrets masked) and the answer; "Send now" and "Resend" act through the API's
functions; pings record their request too; pruning takes the recorded requests along."""

from __future__ import annotations

import html
import re
from typing import Any

import asyncpg

from app.api.context import make_context
from app.api.schema import schema
from app.config import Settings
from app.policy.ids import encode
from app.policy.masking import MASK
from app.store import delivery
from app.store.apikeys import create_key
from app.types import OPERATOR, Visibility
from tests.integration.test_dashboard import client, post, sign_in, site
from tests.support.engine_harness import add_webhook, events, fast, running_engine, wait_until
from tests.support.live_server import serving
from tests.support.receivers import Receiver

SECRET_TOKEN = "tok_live_51Hsupersecretvalue"
LOCAL = Settings(allow_private_targets=True)


def shown_bodies(page: str) -> list[str]:
    """The request bodies an event page shows, unescaped (newest attempt first)."""
    return [html.unescape(b) for b in re.findall(r'<pre class="body request-body">(.*?)</pre>', page, re.S)]


async def _owned_hook(pool: asyncpg.Pool, url: str, **columns: Any) -> tuple[int, str, int]:
    seller = await pool.fetchval("SELECT seller_id FROM invoices WHERE id = 3")
    hook, secret = await add_webhook(pool, url, seller_id=seller, **columns)
    return hook, secret, int(seller)


async def test_event_page_shows_the_exact_request_the_receiver_got(fixture_database_url: str) -> None:
    receiver = await Receiver(respond=lambda n: (202, {"X-Receipt": "r-1"}, b'{"accepted": true}')).start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, secret, seller = await _owned_hook(
                run.pool,
                receiver.url + "/in?api_key=qs-secret&x=1",
                headers=[
                    {"name": "Authorization", "value": f"Bearer {SECRET_TOKEN}"},
                    {"name": "X-Tenant", "value": "acme"},
                ],
            )
            key = await create_key(run.pool, seller_id=seller, name="acme")
            # when: a change is delivered
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            [got] = await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT count(*) = 1 FROM webhook_attempts"))
            [event] = await events(run.pool, hook)
            stored = await run.pool.fetchrow("SELECT * FROM webhook_attempts")
            async with serving(site(run.pool)) as base_url, client() as http:
                await sign_in(http, base_url, key)
                # then: the event page (by its GraphQL ID) shows the bytes the receiver got
                async with http.get(f"{base_url}/dashboard/events/{encode('WebhookEvent', event['id'])}") as r:
                    assert r.status == 200
                    page = await r.text()
                async with http.get(f"{base_url}/dashboard/attempts/{stored['id']}/body") as r:
                    assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment")
                    downloaded = await r.read()
    finally:
        await receiver.stop()
    assert shown_bodies(page) == [got.body.decode()]
    assert downloaded == got.body == stored["request_body"]
    # every header the receiver saw is shown, secrets masked; nothing secret is stored
    headers = dict(stored["request_headers"])
    assert {k.lower() for k in headers} == {k.lower() for k in got.headers}
    assert headers["Authorization"] == f"Bearer {MASK}" and headers["webhook-signature"] == MASK
    assert headers["X-Tenant"] == "acme" and headers["webhook-id"] == got.headers["webhook-id"]
    assert headers["Idempotency-Key"] == got.headers["Idempotency-Key"]  # named like a key, not a secret
    assert stored["request_method"] == "POST"
    assert stored["request_url"] == receiver.url + f"/in?api_key={MASK}&x=1"
    row_text = str(dict(stored))
    for secret_text in (SECRET_TOKEN, "qs-secret", got.headers["webhook-signature"], secret):
        assert secret_text not in row_text and secret_text not in page
    # and the answer: status, headers, body
    assert "202" in page and "X-Receipt" in page and "r-1" in page and '{"accepted": true}' in html.unescape(page)


async def test_shown_body_is_the_sent_one_after_the_format_changes(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _, seller = await _owned_hook(run.pool, receiver.url)
            key = await create_key(run.pool, seller_id=seller, name="acme")
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            [as_json] = await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT count(*) = 1 FROM webhook_attempts"))
            # when: the webhook switches to XML and the next change is delivered
            await run.pool.execute("UPDATE webhooks SET format = 'xml' WHERE id = $1", hook)
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 3")
            received = await receiver.wait_for(2)
            await wait_until(lambda: run.pool.fetchval("SELECT count(*) = 2 FROM webhook_attempts"))
            first, second = await events(run.pool, hook)
            async with serving(site(run.pool)) as base_url, client() as http:
                await sign_in(http, base_url, key)
                async with http.get(f"{base_url}/dashboard/events/{first['id']}") as r:
                    first_page = await r.text()
                async with http.get(f"{base_url}/dashboard/events/{second['id']}") as r:
                    second_page = await r.text()
    finally:
        await receiver.stop()
    # then: the first attempt still shows its JSON bytes, the second the XML it sent
    assert shown_bodies(first_page) == [as_json.body.decode()] and as_json.body.startswith(b"{")
    assert shown_bodies(second_page) == [received[1].body.decode()] and received[1].body.startswith(b"<?xml")


async def test_send_now_cuts_a_retry_backoff_short(fixture_database_url: str) -> None:
    # given: a receiver that fails once, and a retry scheduled an hour away
    receiver = await Receiver(respond=lambda n: (503, {}, b"later") if n == 1 else (200, {}, b"ok")).start()
    try:
        async with running_engine(fixture_database_url, fast(retry_base_ms=3_600_000, retry_max_ms=3_600_000)) as run:
            hook, _, seller = await _owned_hook(run.pool, receiver.url)
            key = await create_key(run.pool, seller_id=seller, name="acme")
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT attempts = 1 FROM webhook_events"))
            [event] = await events(run.pool, hook)
            assert event["status"] == "pending"
            async with serving(site(run.pool)) as base_url, client() as http:
                await sign_in(http, base_url, key)
                async with http.get(f"{base_url}/dashboard/webhooks/{hook}") as r:
                    assert "/send-now" in await r.text()
                # when: "Send now"
                response = await post(http, base_url, f"/events/{event['id']}/send-now", key)
                assert response.status == 303
                # then: the receiver gets it at once, and the event is delivered
                await receiver.wait_for(2)
                await wait_until(lambda: run.pool.fetchval("SELECT status = 'delivered' FROM webhook_events"))
                async with http.get(base_url + response.headers["Location"]) as r:
                    assert "Event due now" in await r.text()
    finally:
        await receiver.stop()


async def test_resend_enqueues_a_fresh_event_with_the_same_payload(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _, seller = await _owned_hook(run.pool, receiver.url)
            key = await create_key(run.pool, seller_id=seller, name="acme")
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 3")
            [first] = await receiver.wait_for(1)
            await wait_until(lambda: run.pool.fetchval("SELECT status = 'delivered' FROM webhook_events"))
            [event] = await events(run.pool, hook)
            async with serving(site(run.pool)) as base_url, client() as http:
                await sign_in(http, base_url, key)
                response = await post(http, base_url, f"/events/{event['id']}/resend", key, back="event")
                assert response.status == 303
                [_, again] = await receiver.wait_for(2)
                # then: the page of the new event, which was delivered with the same payload
                async with http.get(base_url + response.headers["Location"]) as r:
                    page = await r.text()
                assert "Resent" in page and f'data-event-id="{event["id"]}"' not in page
    finally:
        await receiver.stop()
    old, new = first.json(), again.json()
    assert new["payload"] == old["payload"] and new["event"] == old["event"]
    assert new["id"] != old["id"] and new["sequence"] > old["sequence"]


async def test_resend_and_send_now_through_graphql_and_their_refusals(fixture_pool: asyncpg.Pool) -> None:
    hook, _ = await add_webhook(fixture_pool, "https://receiver.example/in")

    async def event(status: str, entity_id: int) -> int:
        return int(
            await fixture_pool.fetchval(
                "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,"
                " payload, payload_hash, changed_at, next_attempt_at) VALUES ('evt_' || md5(random()::text), $1,"
                " 'invoice', $2, 'invoice.updated', $2, $3, '{\"data\": 1}', '\\x01', now(),"
                " now() + interval '1 hour') RETURNING id",
                hook,
                entity_id,
                status,
            )
        )

    delivered, pending, older = await event("delivered", 1), await event("pending", 2), await event("delivered", 2)
    ctx = make_context(fixture_pool, OPERATOR, LOCAL)

    async def run(mutation: str, id_: int, as_: Any = ctx) -> dict[str, Any]:
        result = await schema.execute(
            f"mutation($id: ID!) {{ {mutation}(id: $id) {{ event {{ id status }} errors {{ field message }} }} }}",
            {"id": encode("WebhookEvent", id_)},
            context_value=as_,
        )
        assert result.errors is None, result.errors
        data: dict[str, Any] = result.data[mutation]  # type: ignore[index]
        return data

    # another owner (a seller, for the operator's webhook): not found, nothing changes
    seller = make_context(fixture_pool, Visibility(1), LOCAL)
    before = await fixture_pool.fetch("SELECT id, status, next_attempt_at FROM webhook_events ORDER BY id")
    for mutation, id_ in (("webhookEventSendNow", pending), ("webhookEventResend", delivered)):
        assert (await run(mutation, id_, seller))["errors"] == [{"field": "id", "message": "event not found"}]
    assert await fixture_pool.fetch("SELECT id, status, next_attempt_at FROM webhook_events ORDER BY id") == before
    sent_now = await run("webhookEventSendNow", pending)
    assert sent_now["errors"] == [] and sent_now["event"]["status"] == "PENDING"
    assert await fixture_pool.fetchval("SELECT next_attempt_at <= now() FROM webhook_events WHERE id = $1", pending)
    resent = await run("webhookEventResend", delivered)
    assert resent["errors"] == [] and resent["event"]["id"] != encode("WebhookEvent", delivered)
    new = await fixture_pool.fetchrow(
        "SELECT payload::text, status, sequence FROM webhook_events WHERE webhook_id = $1 AND entity_id = 1"
        " AND id <> $2",
        hook,
        delivered,
    )
    assert new["status"] == "pending" and new["payload"] == '{"data": 1}'
    # refusals: a delivered event's send-now, a pending event's resend, a stale resend
    assert "only pending" in (await run("webhookEventSendNow", delivered))["errors"][0]["message"]
    assert "only delivered" in (await run("webhookEventResend", pending))["errors"][0]["message"]
    assert "newer event" in (await run("webhookEventResend", older))["errors"][0]["message"]
    await fixture_pool.execute("UPDATE webhooks SET enabled = false")
    assert "disabled" in (await run("webhookEventSendNow", pending))["errors"][0]["message"]


async def test_a_ping_records_its_request(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(
                run.pool, receiver.url, headers=[{"name": "X-Api-Key", "value": SECRET_TOKEN}]
            )
            ctx = make_context(run.pool, OPERATOR, LOCAL)
            result = await schema.execute(
                "mutation($id: ID!) { webhookTest(id: $id) { errors { message } } }",
                {"id": encode("Webhook", hook)},
                context_value=ctx,
            )
            assert result.errors is None and result.data["webhookTest"]["errors"] == []  # type: ignore[index]
            [got] = receiver.received
            stored = await run.pool.fetchrow("SELECT * FROM webhook_attempts")
    finally:
        await receiver.stop()
    assert stored["request_body"] == got.body
    assert dict(stored["request_headers"])["X-Api-Key"] == MASK
    assert SECRET_TOKEN not in str(dict(stored))


async def test_pruning_removes_recorded_requests_with_their_events(fixture_pool: asyncpg.Pool) -> None:
    hook, _ = await add_webhook(fixture_pool, "https://receiver.example/in")
    event = await fixture_pool.fetchval(
        "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,"
        " payload, payload_hash, changed_at, finished_at) VALUES ('evt_x', $1, 'invoice', 1, 'invoice.updated', 1,"
        " 'delivered', '{}', '\\x01', now(), now() - interval '30 days') RETURNING id",
        hook,
    )
    await fixture_pool.execute(
        "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, request_method,"
        " request_url, request_headers, request_body) VALUES ($1, $2, now(), 1, 200, 'POST', 'https://x', '[]',"
        " '\\x7b7d')",
        event,
        hook,
    )
    async with fixture_pool.acquire() as conn:
        assert await delivery.prune(conn, retention_s=86400, limit=100) == 1
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhook_attempts") == 0


async def test_webhook_page_shows_the_24_hour_chart_with_its_numbers(pool: asyncpg.Pool) -> None:
    hook, _ = await add_webhook(pool, "https://receiver.example/in")
    event = await pool.fetchval(
        "INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, payload_hash,"
        " changed_at) VALUES ('evt_c', $1, 'ping', 1, 'delivered', '{}', '\\x01', now()) RETURNING id",
        hook,
    )
    for ago_h, code, ms in ((0, 200, 100), (0, 200, 300), (0, 500, 50), (3, None, 9000), (30, 200, 5)):
        await pool.execute(
            "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code)"
            " VALUES ($1, $2, now() - $3 * interval '1 hour', $4, $5)",
            event,
            hook,
            ago_h,
            ms,
            code,
        )
    key = await create_key(pool, seller_id=None, name="ops")
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        async with http.get(f"{base_url}/dashboard/webhooks/{encode('Webhook', hook)}") as r:
            assert r.status == 200
            page = await r.text()
    [svg] = re.findall(r"<svg.*?</svg>", page, re.S)
    assert 'role="img"' in svg and "<title" in svg
    # the attempt 30 hours ago is outside the window
    assert "In the last 24 hours: 4 attempts, 2 answered 2xx, 2 failed." in svg
    assert "2 answered 2xx, 1 failed, median 100 ms" in svg
    assert svg.count('class="ok"') == 1 and svg.count('class="failed"') == 2
    assert "9000 ms" in page  # the table beside it: the hour of the unanswered attempt


async def test_event_page_of_an_attempt_refused_before_sending(pool: asyncpg.Pool) -> None:
    hook, _ = await add_webhook(pool, "https://receiver.example/in")
    event = await pool.fetchval(
        "INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, payload_hash,"
        " changed_at) VALUES ('evt_b', $1, 'ping', 1, 'failed', '{}', '\\x01', now()) RETURNING id",
        hook,
    )
    await pool.execute(
        "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, error)"
        " VALUES ($1, $2, now(), 0, 'blocked: 10.0.0.1 is a private address')",
        event,
        hook,
    )
    key = await create_key(pool, seller_id=None, name="ops")
    async with serving(site(pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        async with http.get(f"{base_url}/dashboard/events/{event}") as r:
            page = await r.text()
    assert r.status == 200 and "Nothing was sent" in page and "blocked: 10.0.0.1" in page
