"""One attempt against a real local aiohttp receiver: bodies, headers, signatures, failures."""

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
from standardwebhooks import Webhook

from app.models import Format, Header, Method, Outgoing
from app.netguard import check_host, is_forbidden_ip, validate_headers, validate_url
from app.signing import new_secret
from app.transport import Transport, parse_retry_after
from tests.receivers import Receiver

SECRET = new_secret()
BODY = {
    "id": "evt_1",
    "event": "invoice.updated",
    "sequence": 3,
    "created_at": "2026-11-22T10:00:00.000000Z",
    "payload": {
        "data": {"node": {"id": "SW52b2ljZTox", "status": "PAID", "lineItems": [{"q": 1}, {"q": 2}]}}
    },
}


def outgoing(url: str, **overrides: object) -> Outgoing:
    values: dict[str, object] = dict(
        url=url,
        method=Method.POST,
        format=Format.JSON,
        headers=(Header("X-Erp", "42"),),
        secrets=(SECRET,),
        message_id="evt_1",
        sequence=3,
        body=BODY,
        timeout_s=2.0,
        allow_private_targets=True,
    )
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with Transport() as t:
        yield t


async def test_json_delivery_carries_signed_standard_webhooks_headers(transport: Transport) -> None:
    receiver = await Receiver().start()
    try:
        result = await transport.send(outgoing(receiver.url + "/hook?token=abc"))
    finally:
        await receiver.stop()
    assert result.ok and result.status_code == 200 and result.response_body == "ok"
    [got] = receiver.received
    assert got.method == "POST" and got.path == "/hook?token=abc"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Erp"] == "42" and got.headers["User-Agent"].startswith("hookql/")
    assert got.headers["Idempotency-Key"] == got.headers["webhook-id"] == "evt_1"
    assert got.headers["Webhook-Sequence"] == "3"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(SECRET).verify(got.body, got.headers) == BODY


async def test_xml_form_and_put(transport: Transport) -> None:
    receiver = await Receiver().start()
    try:
        await transport.send(outgoing(receiver.url, format=Format.XML))
        await transport.send(outgoing(receiver.url, format=Format.FORM, method=Method.PUT))
    finally:
        await receiver.stop()
    xml, form = receiver.received
    assert xml.headers["Content-Type"] == "application/xml"
    assert xml.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><notification><id>evt_1</id>')
    assert b"<lineItems><item><q>1</q></item><item><q>2</q></item></lineItems>" in xml.body
    assert form.method == "PUT" and form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(form.body.decode())
    assert fields["event"] == ["invoice.updated"] and json.loads(fields["payload"][0]) == BODY["payload"]
    for got in (xml, form):
        Webhook(SECRET).verify(got.body, got.headers, json_parse=False)


async def test_failures_are_results_not_exceptions(transport: Transport) -> None:
    answers = {
        1: (302, {"Location": "http://elsewhere/"}, b""),
        2: (503, {"Retry-After": "7"}, b"x" * 10_000),
    }
    receiver = await Receiver(respond=lambda n: answers[n]).start()
    try:
        redirect = await transport.send(outgoing(receiver.url))
        busy = await transport.send(outgoing(receiver.url))
    finally:
        await receiver.stop()
    assert len(receiver.received) == 2  # the redirect was not followed
    assert redirect.status_code == 302 and not redirect.ok
    assert busy.status_code == 503 and busy.retry_after_s == 7.0 and len(busy.response_body) == 4096
    async with Transport() as fresh:  # no pooled keep-alive connection to the stopped receiver
        refused = await fresh.send(outgoing(receiver.url))
    assert refused.status_code is None and refused.error and "connection failed" in refused.error


async def test_timeout_is_reported(transport: Transport) -> None:
    receiver = await Receiver(delay_s=3).start()
    try:
        result = await transport.send(outgoing(receiver.url, timeout_s=0.3))
    finally:
        await receiver.stop()
    assert result.status_code is None and result.error == "timeout after 0.3 s"
    assert 250 <= result.duration_ms < 2000


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_targets_are_refused_at_connect_time(transport: Transport, host: str) -> None:
    receiver = await Receiver().start()
    try:
        url = receiver.url.replace("127.0.0.1", host)
        result = await transport.send(outgoing(url, allow_private_targets=False))
    finally:
        await receiver.stop()
    assert receiver.received == []
    assert result.error and result.error.startswith("blocked:") and "127.0.0.1" in result.error


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http or https"),
        ("/relative", "http or https"),
        ("https://", "no host"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com:99999/", "malformed"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    error = validate_url(url)
    assert error is not None and message in error


def test_userinfo_and_query_are_accepted() -> None:
    assert validate_url("https://user:pw@example.com/hooks?token=abc") is None


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
    ],
)
def test_forbidden_addresses(ip: str) -> None:
    import ipaddress

    assert is_forbidden_ip(ipaddress.ip_address(ip))


async def test_host_names_are_judged_by_what_they_resolve_to() -> None:
    refused = await check_host("localhost", allow_private=False)
    assert refused is not None and "127.0.0.1" in refused
    assert await check_host("localhost", allow_private=True) is None
    assert await check_host("93.184.215.14", allow_private=False) is None


def test_header_rules() -> None:
    ok = [Header("Authorization", "Basic eDEyMw=="), Header("X-Tenant", "a b c")]
    assert validate_headers(ok) == []
    errors = dict(
        validate_headers(
            [
                Header("Bad Name", "x"),
                Header("x-ok", "a\r\nInjected: 1"),
                Header("content-TYPE", "x"),
                Header("Webhook-Id", "x"),
            ]
        )
    )
    assert "not a valid HTTP token" in errors["headers.0.name"]
    assert "CR, LF or NUL" in errors["headers.1.value"]
    assert (
        "cannot be overridden" in errors["headers.2.name"]
        and "cannot be overridden" in errors["headers.3.name"]
    )
    assert "at most 20" in dict(validate_headers([Header(f"X-{i}", "v") for i in range(21)]))["headers"]
    assert "8192 bytes" in dict(validate_headers([Header("X-Big", "v" * 9000)]))["headers"]
