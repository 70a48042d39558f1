"""`hookql listen` as a developer runs it: a real `serve` subprocess that disallows private targets,
the CLI as a subprocess, and a real local aiohttp receiver that the server never connects to."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from tests.support.cli_server import ListenProcess, Served, hookql, serving
from tests.support.receivers import Receiver

LEASE_S = 3  # HOOKQL_LISTEN_LEASE_S of these tests' serve
SWEEP_S = 1.0  # a lapsed hold ends within app.engine.listen.LAPSE_PAD_S of its lapse: 1 s is ample
PUBLIC_URL = "https://93.184.216.34/hook"  # a public address: webhookCreate takes it without private targets
CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) {
  webhook { id } errors { field message } } }"""


@pytest.fixture
async def served(fixture_database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(
        fixture_database_url, tmp_path / "serve.log", debounce_ms="50", max_delay_ms="200",
        retry_base_ms="300", retry_max_ms="1000", listen_lease_s=str(LEASE_S),
    ) as served:
        yield served


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def touch_invoice(served: Served, seller_id: int | None = None) -> int:
    """Commit a change of one invoice (of `seller_id`, or any): the webhooks of invoices fire."""
    rows = await served.fetch(
        "UPDATE invoices SET status = CASE WHEN status = 'paid' THEN 'pending' ELSE 'paid' END"
        " WHERE id = (SELECT min(id) FROM invoices WHERE $1::bigint IS NULL OR seller_id = $1) RETURNING id",
        seller_id,
    )
    return int(rows[0]["id"])


async def temporary_webhooks(served: Served) -> list[int]:
    return [r["id"] for r in await served.fetch("SELECT id FROM webhooks WHERE listen_only")]


async def test_a_delivery_reaches_the_local_receiver_signed_from_a_serve_that_disallows_private_targets(
    served: Served, receiver: Receiver
) -> None:
    # Given a serve that refuses webhooks to this machine …
    refused = await served.gql(CREATE, {"input": {"name": "x", "url": receiver.url + "/hook", "type": "INVOICE"}})
    assert [e["field"] for e in refused["webhookCreate"]["errors"]] == ["url"]
    # … when `hookql listen` forwards a temporary webhook's deliveries to it
    listen = await ListenProcess.start(served, "--forward-to", receiver.url + "/hook", "--type", "invoice")
    try:
        secret = await listen.secret()
        webhook_id = await listen.webhook_id()
        await touch_invoice(served)
        [got] = await receiver.wait_for(1, timeout_s=20)
        line = await listen.line_with("invoice.updated")
    finally:
        result = await listen.stop()
    # then the receiver got the real delivery, whose signature verifies with the webhook's secret
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["event"] == "invoice.updated" and payload["webhook_id"] == webhook_id
    assert got.headers["webhook-id"] == payload["id"] and got.headers["Content-Type"] == "application/json"
    assert got.path == "/hook" and got.method == "POST"
    # and the CLI printed one line with the local status and the outcome, which the server recorded
    assert "[200]" in line and "delivered" in line and payload["id"] in line
    assert result.returncode == 0, result
    assert "traceback" not in served.serve.log_since(0).lower()


async def test_the_local_answer_is_the_attempt_and_ctrl_c_deletes_the_temporary_webhook(
    served: Served, receiver: Receiver
) -> None:
    receiver.respond = lambda n: (202, {"X-Local": "yes"}, b"accepted locally")
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--type", "INVOICE", "--events", "updated")
    try:
        await listen.webhook_id()
        await touch_invoice(served)
        await listen.line_with("): delivered")
        [attempt] = await served.fetch(
            "SELECT a.status_code, a.response_body, a.response_headers, e.status FROM webhook_attempts a"
            " JOIN webhook_events e ON e.id = a.event_id"
        )
        assert (attempt["status_code"], attempt["response_body"]) == (202, "accepted locally")
        assert attempt["status"] == "delivered"
        assert json.loads(attempt["response_headers"])["X-Local"] == "yes"
        assert len(await temporary_webhooks(served)) == 1
    finally:
        result = await listen.stop(signal.SIGINT)
    assert result.returncode == 0
    assert "deleted" in result.stdout.splitlines()[-1]
    assert await temporary_webhooks(served) == []
    assert await served.fetch("SELECT 1 FROM webhooks") == []


async def test_sigterm_also_deletes_it(served: Served, receiver: Receiver) -> None:
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--type", "VARIANT")
    await listen.webhook_id()
    result = await listen.stop(signal.SIGTERM)
    assert result.returncode == 0 and await temporary_webhooks(served) == []


async def test_a_killed_listeners_webhook_is_deleted_within_the_lease(served: Served, receiver: Receiver) -> None:
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--type", "INVOICE")
    await listen.webhook_id()
    [webhook_id] = await temporary_webhooks(served)
    killed_at = time.monotonic()
    await listen.stop(signal.SIGKILL)
    while await temporary_webhooks(served):
        assert time.monotonic() - killed_at < LEASE_S + SWEEP_S + 3.0, "still there past the bound"
        await asyncio.sleep(0.1)
    assert await served.fetch("SELECT 1 FROM webhooks WHERE id = $1", webhook_id) == []


async def test_attached_to_an_existing_webhook_it_takes_its_deliveries_and_gives_them_back(
    served: Served, receiver: Receiver
) -> None:
    # A webhook whose (public) URL the server would call; while listened to, it is not called.
    created = await served.gql(CREATE, {"input": {"name": "ERP", "url": PUBLIC_URL, "type": "INVOICE"}})
    webhook_id = created["webhookCreate"]["webhook"]["id"]
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--webhook", webhook_id)
    try:
        await listen.line_with("Ready!")
        await touch_invoice(served)
        got = await receiver.wait_for(1, timeout_s=20)
        await listen.line_with("): delivered")
        # every attempt is the listener's: the server never tried the webhook's own URL meanwhile
        codes = [r["status_code"] for r in await served.fetch("SELECT status_code FROM webhook_attempts")]
    finally:
        result = await listen.stop()
    assert got[0].json()["webhook_id"] == webhook_id and codes == [200]
    assert result.returncode == 0 and "delivered over HTTP again" in result.stdout
    [hook] = await served.fetch("SELECT listen_until, listen_only FROM webhooks")
    assert hook["listen_until"] is None and not hook["listen_only"]  # still there, no longer held


async def test_webhooks_test_on_a_listened_webhook_goes_through_the_listener(
    served: Served, receiver: Receiver
) -> None:
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--type", "INVOICE")
    try:
        webhook_id = await listen.webhook_id()
        tested = await hookql(served, "webhooks", "test", webhook_id)
        assert tested.returncode == 0 and "hookql listen" in tested.stdout, tested
        line = await listen.line_with("--> ping")
        assert "[200]" in line
        [got] = await receiver.wait_for(1)
        assert got.json()["event"] == "ping"
    finally:
        await listen.stop()


# --- hostile -----------------------------------------------------------------------------------


class HangingOnce:
    """A local receiver whose first request never gets an answer; later ones get 200."""

    def __init__(self) -> None:
        self.requests = 0
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        if self.requests == 1:
            await self.release.wait()
        return web.Response(text="ok")

    async def start(self) -> HangingOnce:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_a_hanging_local_receiver_times_out_is_reported_and_the_event_retries(served: Served) -> None:
    hanging = await HangingOnce().start()
    listen = await ListenProcess.start(
        served, "--forward-to", hanging.url, "--type", "INVOICE", "--timeout-seconds", "1"
    )
    try:
        await listen.webhook_id()
        await touch_invoice(served)
        timed_out = await listen.line_with("timeout after 1 s")
        delivered = await listen.line_with("): delivered")
        # (read before the listener stops: its temporary webhook goes, and its events with it)
        attempts = await served.fetch("SELECT status_code, error FROM webhook_attempts ORDER BY id")
    finally:
        await listen.stop()
        await hanging.stop()
    assert "retrying" in timed_out and "try 1" in timed_out
    assert "try 2" in delivered and "[200]" in delivered
    assert [(a["status_code"], a["error"]) for a in attempts] == [(None, "timeout after 1 s"), (200, None)]


async def test_a_huge_local_answer_is_cut_to_4_kib(served: Served, receiver: Receiver) -> None:
    receiver.respond = lambda n: (200, {}, b"x" * (32 * 1024 * 1024))
    listen = await ListenProcess.start(served, "--forward-to", receiver.url, "--type", "INVOICE")
    try:
        await listen.webhook_id()
        await touch_invoice(served)
        await listen.line_with("): delivered")
        [attempt] = await served.fetch("SELECT status_code, length(response_body) AS n FROM webhook_attempts")
    finally:
        await listen.stop()
    assert (attempt["status_code"], attempt["n"]) == (200, 4096)


async def test_another_sellers_webhook_cannot_be_listened_to_and_stays_as_it_was(served: Served) -> None:
    created = await served.gql(
        CREATE, {"input": {"name": "B", "url": PUBLIC_URL, "type": "INVOICE"}}, key=served.seller_keys[2]
    )
    foreign = created["webhookCreate"]["webhook"]["id"]
    for webhook_id in (foreign, "not-an-id", "V2ViaG9vazo5OTk5OQ=="):
        listen = await ListenProcess.start(
            served, "--forward-to", "http://127.0.0.1:9/", "--webhook", webhook_id, key=served.seller_keys[1]
        )
        result = await listen.stop(0)  # signal 0: only wait for it to end by itself
        assert result.returncode == 1, result
        expected = f"hookql: error: webhook {webhook_id} not found (or not visible to this API key)"
        assert result.stderr.strip() == expected
        assert "Traceback" not in result.stderr
    [hook] = await served.fetch("SELECT listen_until, listen_only FROM webhooks")
    assert hook["listen_until"] is None and not hook["listen_only"]


async def test_a_bad_key_and_an_unreachable_server_are_one_line_errors(served: Served) -> None:
    bad = await ListenProcess.start(served, "--forward-to", "http://127.0.0.1:9/", "--type", "INVOICE", key="nope")
    result = await bad.stop(0)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "API key" in result.stderr
    away = await hookql(served, "listen", "--forward-to", "http://127.0.0.1:9/", "--type", "INVOICE",
                        url="http://127.0.0.1:9")
    assert away.returncode == 1 and away.stderr.count("\n") == 1 and "cannot reach" in away.stderr
    assert await served.fetch("SELECT 1 FROM webhooks") == []
