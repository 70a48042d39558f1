"""Target policy: URL shape, forbidden addresses (SSRF), host resolution, custom header rules."""

import ipaddress
import random
import time
from urllib.parse import urlsplit

import pytest
from yarl import URL

from app.transport.netguard import (
    Target,
    check_host,
    forbidden_reason,
    is_forbidden_ip,
    literal_ip,
    parse_target,
    validate_headers,
    validate_url,
)
from app.types import Header


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http or https"),
        ("/relative/path", "http or https"),
        ("example.com/hooks", "http or https"),
        ("https://", "no host"),
        ("https:///path", "no host"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\r\nX-Injected: 1", "whitespace or control"),
        ("https://example.com/\x00", "control"),
        ("https://example.com:99999/", "malformed"),
        ("https://example.com:0/", "port"),
        ("https://[zz]/", "malformed"),
        ("https://exa<mple.com/", "not a valid host name"),
        ("https://a..b/", "not a valid host name"),
        ("http://%41.com/", "not a valid host name"),
        ("http://127.1/", "canonical IP address"),
        ("http://2130706433/", "canonical IP address"),
        # parsers disagree: urllib reads 93.184.216.34 (userinfo `127.0.0.1:9\\`), a browser reads
        # 127.0.0.1:9, yarl (aiohttp) refuses it at delivery
        ("http://127.0.0.1:9\\@93.184.216.34/", "backslash"),
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("https://example.com\\path", "backslash"),
        ("http://[::1/", "malformed: Invalid IPv6 URL"),
        ("http://[v1.x]/", "brackets must be an IPv6 address"),
        ("http://[127.0.0.1]/", "malformed"),
        ("https://[::1]@/", "malformed"),  # yarl raises IndexError on this one
        ("http://１２７.0.0.1/", "must be written as the IP address 127.0.0.1"),  # full-width digits
        ("https://example.com/\ud800", "not valid Unicode"),
        ("https://\u7528:pw@example.com/", "Latin-1"),  # Basic auth cannot encode it: every attempt would fail
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    error = validate_url(url)
    assert error is not None and message in error


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@example.com/hooks?token=abc",  # userinfo and query are kept
        "http://erp.example.com:8080/in#fragment",
        "HTTPS://Example.COM/",
        "https://bücher.example/hook",
        "https://example.com./",
        "http://[2606:4700::1111]:8443/hook",
        "https://example.com/" + "a" * (2048 - len("https://example.com/")),  # exactly 2,048
        "https://xn--bcher-kva.example/",
        "https://faß.de/",  # IDNA 2003 and 2008 differ here: judged as yarl (aiohttp) encodes it
        "https://usér:pw@example.com/",  # Latin-1 credentials are fine
        "http://a@b@example.com/",  # every parser takes the last @
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert validate_url(url) is None


def test_the_target_is_what_aiohttp_connects_to() -> None:
    assert parse_target("https://u:p@Bücher.example/x") == Target("https", "xn--bcher-kva.example", 443, True)
    assert parse_target("http://[::ffff:127.0.0.1]:81/") == Target("http", "::ffff:7f00:1", 81, False)
    assert parse_target("https://faß.de/") == Target("https", URL("https://faß.de/").raw_host or "", 443, False)


def test_no_url_makes_validation_raise_and_every_accepted_one_reads_the_same_to_both_parsers() -> None:
    # A seeded fuzz over the characters that split authorities: validation answers every URL
    # with a reason or a target, and for each target urllib (the transport's literal-address
    # check) and yarl (what aiohttp connects to) name the same address.
    pieces = [*"hps:/@[]%.\\?#a1:0F-_~!$&'()*+,;=", "\ud800", "\x00", "\u3002", "\uff0e", "１", "ß", "ﬀ", "[::1]",
              "xn--", "%00", "%2f", "%5c", "::ffff:", "127.0.0.1", ":80", ":0", "\u200b", "İ", "%25", "[v1.x]"]
    rng = random.Random(11)
    accepted = 0
    for _ in range(30_000):
        url = rng.choice(["http://", "https://", ""]) + "".join(rng.choices(pieces, k=rng.randint(0, 24)))
        target = parse_target(url)
        if isinstance(target, Target):
            accepted += 1
            assert literal_ip(urlsplit(url).hostname or "") == literal_ip(target.host), url
            assert URL(url).raw_host == target.host, url
    assert accepted > 100  # the fuzz reaches the accepting paths too


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.255", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation range
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("fd00:ec2::254", "cloud metadata"),
        ("2001:db8::1", "reserved"),
        # IPv6 forms that reach an IPv4 address are judged as that address
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_forbidden_addresses_and_why(ip: str, reason: str) -> None:
    address = ipaddress.ip_address(ip)
    assert is_forbidden_ip(address)
    assert reason in (forbidden_reason(address) or "")


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "93.184.215.14",
        "100.63.255.255",
        "172.32.0.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::",
    ],
)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert not is_forbidden_ip(ipaddress.ip_address(ip))


async def test_literal_hosts_are_judged_without_dns() -> None:
    assert await check_host("127.0.0.1", allow_private=False) == "127.0.0.1 is a loopback address"
    assert await check_host("::1", allow_private=False) == "::1 is a loopback address"
    assert await check_host("93.184.215.14", allow_private=False) is None


@pytest.mark.parametrize("host", ["localhost", "127.1", "2130706433", "0x7f000001"])
async def test_names_that_resolve_to_loopback_are_refused_and_the_message_names_the_address(
    host: str,
) -> None:
    refused = await check_host(host, allow_private=False)
    assert refused is not None and refused.startswith(f"{host} resolves to ") and "loopback" in refused
    assert "127.0.0.1" in refused or "::1" in refused


async def test_private_targets_allowed_by_setting() -> None:
    assert await check_host("localhost", allow_private=True) is None
    assert await check_host("169.254.169.254", allow_private=True) is None


async def test_unresolvable_hosts_pass_since_delivery_checks_the_connected_address() -> None:
    t0 = time.monotonic()
    assert await check_host("no-such-receiver.invalid", allow_private=False) is None
    assert time.monotonic() - t0 < 6  # bounded by the DNS timeout


def test_good_headers_pass() -> None:
    ok = [Header("Authorization", "Basic eDEyMw=="), Header("X-Tenant", "a b\tc")]
    assert validate_headers(ok) == []
    assert validate_headers([Header("X-Value", "café ☕")]) == []


@pytest.mark.parametrize(
    "name",
    ["Bad Name", "X:Colon", "", "X-Ünicode", "(paren)", "X\r\nY", "X-A\n", "Host\n", "X-A\r", "\nX-A", "X\0",
     "X\ud800"],
)
def test_header_names_must_be_tokens(name: str) -> None:
    # A trailing newline is the case a `^…$` pattern lets through: `$` matches before a final \n.
    assert dict(validate_headers([Header(name, "v")]))["headers.0.name"].endswith("is not a valid HTTP token")


def test_a_huge_header_name_is_not_echoed_whole() -> None:
    message = dict(validate_headers([Header("(" * 5000, "v")]))["headers.0.name"]
    assert message.endswith("is not a valid HTTP token") and len(message) < 200


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-length",
        "CONTENT-TYPE",
        "Transfer-Encoding",
        "Connection",
        "User-Agent",
        "Idempotency-Key",
        "webhook-sequence",
        "Webhook-Id",
        "webhook-signature",
        "WEBHOOK-TIMESTAMP",
        "webhook-anything",
    ],
)
def test_engine_headers_cannot_be_overridden_in_any_case(name: str) -> None:
    assert "cannot be overridden" in dict(validate_headers([Header(name, "x")]))["headers.0.name"]


@pytest.mark.parametrize("name", ["Upgrade", "keep-alive", "TE", "Trailer", "Proxy-Connection", "Expect"])
def test_hop_by_hop_headers_cannot_be_set(name: str) -> None:
    assert "controls the connection" in dict(validate_headers([Header(name, "x")]))["headers.0.name"]


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\0b", "a\x1bb", "a\x7f", "a\x0bb", "v\n"])
def test_header_values_carry_no_cr_lf_nul_or_other_controls(value: str) -> None:
    message = dict(validate_headers([Header("X-Ok", value)]))["headers.0.value"]
    assert message.endswith("must not contain CR, LF, NUL or other control characters")


def test_a_header_value_with_a_lone_surrogate_is_refused_not_raised_on() -> None:
    assert "not valid Unicode" in dict(validate_headers([Header("X-Ok", "a\ud800")]))["headers.0.value"]


def test_repeated_header_names_are_refused() -> None:
    errors = dict(validate_headers([Header("X-Tenant", "a"), Header("x-tenant", "b")]))
    assert list(errors) == ["headers.1.name"] and "more than once" in errors["headers.1.name"]


def test_at_most_20_headers_and_8_kib_in_all() -> None:
    assert validate_headers([Header(f"X-{i}", "v") for i in range(20)]) == []
    assert "at most 20" in dict(validate_headers([Header(f"X-{i}", "v") for i in range(21)]))["headers"]
    assert validate_headers([Header("X-Big", "v" * (8192 - 5))]) == []
    assert "8192 bytes" in dict(validate_headers([Header("X-Big", "v" * (8192 - 4))]))["headers"]
    # bytes, not characters
    assert "8192 bytes" in dict(validate_headers([Header("X-Big", "é" * 4094)]))["headers"]


def test_far_too_many_headers_get_one_message_not_one_each() -> None:
    errors = validate_headers([Header("Bad Name", "\n")] * 10_000)
    assert [field for field, _ in errors if not field.startswith("headers.")] == ["headers", "headers"]
    assert len(errors) <= 2 + 2 * 20


def test_every_problem_is_reported_at_once() -> None:
    errors = validate_headers([Header("Bad Name", "x"), Header("x-ok", "a\nb"), Header("Host", "x")])
    assert [field for field, _ in errors] == ["headers.0.name", "headers.1.value", "headers.2.name"]
