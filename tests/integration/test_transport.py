"""One attempt against a real local aiohttp receiver: bodies, headers, signatures, failures, SSRF."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from app import __version__
from app.policy.signing import new_secret
from app.transport.http import RESPONSE_BODY_LIMIT, Transport, render_body
from app.types import Format, Header, Method, Outgoing
from tests.support.envelopes import BODY
from tests.support.receivers import Receiver

OLD_SECRET, NEW_SECRET = new_secret(), new_secret()
def outgoing(url: str, **overrides: object) -> Outgoing:
    values: dict[str, object] = dict(
        url=url,
        method=Method.POST,
        format=Format.JSON,
        headers=(Header("X-Erp", "42"), Header("Authorization", "Basic eDEyMw==")),
        secrets=(NEW_SECRET, OLD_SECRET),
        message_id="evt_1",
        sequence=3,
        body=BODY,
        timeout_s=2.0,
        allow_private_targets=True,  # the receiver is on loopback
    )
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with Transport() as t:
        yield t


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def start_app(handler: Any) -> tuple[web.AppRunner, str]:
    """A one-route receiver for answers the shared Receiver cannot give (streamed bodies)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# --- rendering (pure) -------------------------------------------------------------------------


# --- delivering -------------------------------------------------------------------------------


async def test_json_delivery_carries_custom_and_standard_webhooks_headers(
    transport: Transport, receiver: Receiver
) -> None:
    # when
    result = await transport.send(outgoing(receiver.url + "/hook?token=abc"))
    # then the receiver got one signed POST
    assert result.ok and result.status_code == 200 and result.response_body == "ok" and result.error is None
    [got] = receiver.received
    assert got.method == "POST" and got.path == "/hook?token=abc"
    assert got.headers["X-Erp"] == "42" and got.headers["Authorization"] == "Basic eDEyMw=="
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == f"hookql/{__version__}"
    assert got.headers["Idempotency-Key"] == got.headers["webhook-id"] == "evt_1"
    assert got.headers["Webhook-Sequence"] == "3"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert abs(result.started_at.timestamp() - int(got.headers["webhook-timestamp"])) < 1
    assert result.started_at.tzinfo is UTC and result.duration_ms >= 0
    # and a receiver holding either live secret verifies the exact bytes
    for secret in (NEW_SECRET, OLD_SECRET):
        assert Webhook(secret).verify(got.body, got.headers) == BODY


async def test_custom_headers_come_first(transport: Transport) -> None:
    order: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        order.extend(request.headers.keys())
        return web.Response(text="ok")

    runner, url = await start_app(handler)
    try:
        await transport.send(outgoing(url))
    finally:
        await runner.cleanup()
    assert order.index("X-Erp") < order.index("Authorization") < order.index("Content-Type")
    assert order.index("Content-Type") < order.index("webhook-signature")


@pytest.mark.parametrize(
    ("fmt", "method", "content_type"),
    [
        (Format.XML, Method.POST, "application/xml"),
        (Format.FORM, Method.PUT, "application/x-www-form-urlencoded"),
        (Format.JSON, Method.PUT, "application/json"),
    ],
)
async def test_every_format_and_method_is_sent_signed(
    transport: Transport, receiver: Receiver, fmt: Format, method: Method, content_type: str
) -> None:
    result = await transport.send(outgoing(receiver.url, format=fmt, method=method))
    assert result.ok
    [got] = receiver.received
    assert got.method == method.value and got.headers["Content-Type"] == content_type
    assert got.body == render_body(BODY, fmt)[0]
    for secret in (NEW_SECRET, OLD_SECRET):
        Webhook(secret).verify(got.body, got.headers, json_parse=False)


async def test_engine_headers_win_over_custom_ones_of_any_case(
    transport: Transport, receiver: Receiver
) -> None:
    # given a stored row that predates validation and names engine headers
    sneaky = (Header("content-type", "text/plain"), Header("WEBHOOK-ID", "forged"), Header("X-Ok", "1"))
    await transport.send(outgoing(receiver.url, headers=sneaky))
    [got] = receiver.received
    assert got.headers["Content-Type"] == "application/json" and got.headers["webhook-id"] == "evt_1"
    assert got.headers["X-Ok"] == "1"


# --- failures are results ---------------------------------------------------------------------


async def test_redirects_are_not_followed(transport: Transport) -> None:
    receiver = await Receiver(respond=lambda n: (302, {"Location": "/elsewhere"}, b"moved")).start()
    try:
        result = await transport.send(outgoing(receiver.url + "/hook"))
    finally:
        await receiver.stop()
    assert [r.path for r in receiver.received] == ["/hook"]
    assert result.status_code == 302 and not result.ok and result.response_headers["Location"] == "/elsewhere"


async def test_server_errors_are_recorded_with_headers_body_and_retry_after(transport: Transport) -> None:
    receiver = await Receiver(respond=lambda n: (503, {"Retry-After": "7", "X-Req": "r1"}, b"busy")).start()
    try:
        result = await transport.send(outgoing(receiver.url))
    finally:
        await receiver.stop()
    assert result.status_code == 503 and not result.ok and result.error is None
    assert result.response_body == "busy" and result.response_headers["X-Req"] == "r1"
    assert result.retry_after_s == 7.0


async def test_only_the_first_4_kib_of_the_answer_is_kept(transport: Transport) -> None:
    receiver = await Receiver(respond=lambda n: (500, {}, "é".encode() * 10_000)).start()
    try:
        result = await transport.send(outgoing(receiver.url))
    finally:
        await receiver.stop()
    assert result.status_code == 500 and result.response_body == "é" * (RESPONSE_BODY_LIMIT // 2)


async def test_an_endless_answer_is_not_read_to_the_end(transport: Transport) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        while True:  # until the client goes away
            await response.write(b"x" * 65536)
            await asyncio.sleep(0)

    runner, url = await start_app(endless)
    try:
        result = await transport.send(outgoing(url, timeout_s=5.0))
    finally:
        await runner.cleanup()
    assert result.ok and len(result.response_body) == RESPONSE_BODY_LIMIT
    assert result.duration_ms < 2000


async def test_timeout_is_reported(transport: Transport) -> None:
    receiver = await Receiver(delay_s=3).start()
    try:
        result = await transport.send(outgoing(receiver.url, timeout_s=0.3))
    finally:
        await receiver.stop()
    assert result.status_code is None and result.error == "timeout after 0.3 s"
    assert 250 <= result.duration_ms < 2000


async def test_a_slow_trickling_body_times_out_too(transport: Transport) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(30):
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    runner, url = await start_app(trickle)
    try:
        result = await transport.send(outgoing(url, timeout_s=0.5))
    finally:
        await runner.cleanup()
    assert result.error == "timeout after 0.5 s" and result.duration_ms < 2000


async def test_connection_refused_is_reported(transport: Transport) -> None:
    receiver = await Receiver().start()
    url = receiver.url
    await receiver.stop()  # nothing listens on that port any more
    result = await transport.send(outgoing(url))
    assert result.status_code is None and result.error is not None
    assert result.error.startswith("connection failed")


async def test_a_url_aiohttp_cannot_send_is_a_result_not_an_exception(transport: Transport) -> None:
    result = await transport.send(outgoing("http://[::1"))
    assert result.status_code is None and result.error


async def test_url_credentials_beside_an_authorization_header_are_a_result_not_an_exception(
    transport: Transport, receiver: Receiver
) -> None:
    # given a stored webhook from before registration refused this combination
    url = receiver.url.replace("http://", "http://u:pw@") + "/hook"
    out = outgoing(url, headers=(Header("Authorization", "Bearer t"),))
    # when it is sent, then the attempt records why nothing was sent
    result = await transport.send(out)
    assert result.status_code is None and result.error and "refused before sending" in result.error
    assert receiver.received == []


# --- private targets --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f000001"])
async def test_loopback_targets_are_refused_at_connect_time(
    transport: Transport, receiver: Receiver, host: str
) -> None:
    url = receiver.url.replace("127.0.0.1", host)
    result = await transport.send(outgoing(url, allow_private_targets=False))
    assert receiver.received == []
    assert result.status_code is None and result.error is not None
    assert result.error.startswith("blocked:") and "127.0.0.1" in result.error


@pytest.mark.parametrize("host", ["[::1]", "[::ffff:127.0.0.1]", "169.254.169.254"])
async def test_forbidden_literal_addresses_are_refused_without_connecting(
    transport: Transport, host: str
) -> None:
    result = await transport.send(outgoing(f"http://{host}:9/hook", allow_private_targets=False))
    assert result.error is not None and result.error.startswith("blocked:") and result.duration_ms < 100


async def test_private_targets_are_reached_when_allowed(transport: Transport, receiver: Receiver) -> None:
    result = await transport.send(outgoing(receiver.url.replace("127.0.0.1", "localhost")))
    assert result.ok and len(receiver.received) == 1


async def test_one_transport_serves_guarded_and_allowed_attempts_side_by_side(
    transport: Transport, receiver: Receiver
) -> None:
    blocked, allowed = await asyncio.gather(
        transport.send(outgoing(receiver.url, allow_private_targets=False)),
        transport.send(outgoing(receiver.url, allow_private_targets=True)),
    )
    assert blocked.error and blocked.error.startswith("blocked:") and allowed.ok
    assert len(receiver.received) == 1


# --- Retry-After ------------------------------------------------------------------------------
