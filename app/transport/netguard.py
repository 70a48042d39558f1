"""Where webhooks may point: URL shape, forbidden address ranges (SSRF), and custom headers.

Registration runs `parse_target` + `check_host` + `validate_headers`; the transport runs
`is_forbidden_ip` again on the address it actually connects to, so a DNS answer that changed
after registration (rebinding) cannot reach an internal service."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

from app.types import Header

MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_BYTES = 8 * 1024  # names + values, all headers together, UTF-8
DNS_TIMEOUT_S = 5.0  # registration must not hang on a slow resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (network, what it is) — checked in order, so the message names the most specific reason.
_FORBIDDEN: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("169.254.169.254/32", "a cloud metadata address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),  # Alibaba Cloud
        ("0.0.0.0/8", "an unspecified address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a shared (CGNAT) address"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "a reserved address"),
        ("198.18.0.0/15", "a reserved address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),  # includes 255.255.255.255
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),  # deprecated, still routed inside some networks
        ("ff00::/8", "a multicast address"),
        ("64:ff9b:1::/48", "a local NAT64 address"),
    )
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# RFC 9110 token: 1*tchar. Used with fullmatch: a `$` would also match before a final "\n".
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A DNS label after IDNA encoding; `_` is tolerated because real hosts use it (SRV-style names).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
# A lone (unpaired) surrogate: not a character, so no encoder (UTF-8, PostgreSQL) can carry it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Control characters a header value cannot carry (RFC 9110 §5.5); horizontal tab is allowed.
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the engine sets on every delivery (compared lower-case); `webhook-*` is reserved too.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        "idempotency-key",
        "webhook-sequence",
    }
)
# Hop-by-hop headers (RFC 9110 §7.6.1) and Expect: they steer the connection the engine owns,
# not the message, so a webhook cannot set them either.
CONNECTION_HEADERS = frozenset({"keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a surrogate code point outside a pair: JSON can spell one
    (`"\\ud800"`), but UTF-8 cannot encode it."""
    return _SURROGATE.search(text) is not None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), judged in its place:
    `::ffff:127.0.0.1` reaches loopback just as `127.0.0.1` does."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why a delivery must not connect to `ip` ("a loopback address", …), or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return forbidden_reason(embedded)
    for network, what in _FORBIDDEN:
        if ip.version == network.version and ip in network:
            return what
    # The stdlib tables cover the remaining special-purpose registry entries (documentation,
    # benchmarking, IETF protocol assignments, Teredo, …) that are no receiver's address.
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_link_local or ip.is_loopback:
        return "a private or reserved address"
    return None


def is_forbidden_ip(ip: IPAddress) -> bool:
    """True for loopback, private, link-local, CGNAT, multicast, unspecified, reserved and cloud
    metadata addresses, and for IPv6 addresses that embed such an IPv4 address."""
    return forbidden_reason(ip) is not None


def describe_forbidden(ip: IPAddress) -> str:
    """The reason `ip` is forbidden, for messages; only meaningful when it is."""
    return forbidden_reason(ip) or "an allowed address"


def literal_ip(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal (brackets and IPv6 zone ids tolerated), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _host_problem(host: str) -> str | None:
    """Why `host` (yarl's `raw_host`: IDNA-encoded, an IPv6 literal without brackets) is no
    receiver's name, or None."""
    if literal_ip(host) is not None:
        return None
    labels = host.lower().removesuffix(".").split(".")
    if len(host) > 253 or not host.isascii() or not all(_LABEL.fullmatch(label) for label in labels):
        return f"URL host {host!r} is not a valid host name"
    if labels[-1].isdigit():
        # No top-level domain is numeric: this is an IPv4 address in a shorthand (`127.1`,
        # `2130706433`) that resolvers accept but HTTP clients refuse.
        return f"URL host {host!r} is not a valid host name or canonical IP address"
    return None


@dataclass(frozen=True)
class Target:
    """Where a webhook URL sends, read as aiohttp reads it (yarl, the parse the transport uses)."""

    scheme: str
    host: str  # IDNA-encoded; an IPv6 literal without brackets
    port: int
    has_credentials: bool  # user:password@ in the URL: aiohttp sends them as Basic auth


def parse_target(url: str) -> Target | str:
    """The target of `url`, or the reason it cannot be a webhook's. Absolute http/https, at most
    2,048 characters, with a host; userinfo and query strings are kept (receivers authenticate
    so). The URL must mean the same to every parser: no backslash (browsers and some clients read
    it as `/`, others as part of the userinfo), and urllib and yarl must agree on host and port.
    Addresses are judged separately by `check_host` (needs DNS)."""
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if has_lone_surrogate(url):
        return "URL is not valid Unicode (it contains a lone surrogate)"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "URL must not contain whitespace or control characters"
    if "\\" in url:
        return "URL must not contain a backslash: HTTP clients disagree about where its host ends"
    try:
        split = urlsplit(url)
        split_port = split.port
        parsed = URL(url)
        port = parsed.port
    except ValueError as exc:
        return f"URL is malformed: {exc}"
    except IndexError:  # yarl 1.25 on an empty host after a bracketed userinfo (`https://[::1]@/`)
        return "URL is malformed"
    if parsed.scheme not in _DEFAULT_PORTS or split.scheme != parsed.scheme:
        return "URL must be absolute and use http or https"
    if not parsed.raw_host or not split.hostname:
        return "URL has no host"
    if parsed.explicit_port == 0:
        return "URL port must be 1-65535"
    problem = _host_problem(parsed.raw_host)
    if problem:
        return problem
    if _as_yarl_host(split.hostname) != parsed.raw_host or (split_port or _DEFAULT_PORTS[split.scheme]) != port:
        return f"URL is ambiguous: HTTP clients disagree about its host ({split.hostname!r} or {parsed.raw_host!r})"
    ip = literal_ip(parsed.raw_host)
    if split.netloc.rpartition("@")[2].startswith("[") and not isinstance(ip, ipaddress.IPv6Address):
        return "URL host in brackets must be an IPv6 address"
    if ip is not None and literal_ip(split.hostname) != ip:
        # e.g. full-width digits: an address only after Unicode normalisation, so it must be
        # written as one
        return f"URL host {split.hostname!r} must be written as the IP address {ip}"
    if not _latin1((parsed.user or "") + (parsed.password or "")):
        return "URL credentials (user:password@) must be Latin-1 characters: Basic auth cannot send others"
    return Target(
        scheme=parsed.scheme,
        host=parsed.raw_host,
        port=port or _DEFAULT_PORTS[parsed.scheme],
        has_credentials=parsed.raw_user is not None or parsed.raw_password is not None,
    )


def _as_yarl_host(host: str) -> str | None:
    """urllib's host, normalised as yarl normalises its own (IDNA, IPv6 compression)."""
    try:
        return URL.build(scheme="http", host=host).raw_host
    except ValueError:
        return None


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def validate_url(url: str) -> str | None:
    """The reason `url` cannot be a webhook target (see `parse_target`), or None."""
    target = parse_target(url)
    return target if isinstance(target, str) else None


async def check_host(host: str, allow_private: bool) -> str | None:
    """Resolve `host` and refuse it when it is, or any address it resolves to is, forbidden.
    The message names the address. Unresolvable hosts pass: DNS may lag a new receiver, and the
    transport checks the address actually connected to at delivery time anyway."""
    if allow_private:
        return None
    ip = literal_ip(host)
    if ip is not None:
        reason = forbidden_reason(ip)
        return f"{host} is {reason}" if reason else None
    try:
        async with asyncio.timeout(DNS_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return None
    for info in infos:
        address = literal_ip(str(info[4][0]))
        if address is None:
            continue
        reason = forbidden_reason(address)
        if reason:
            return f"{host} resolves to {address}, {reason}"
    return None


def validate_headers(headers: Sequence[Header]) -> list[tuple[str, str]]:
    """(field, message) for every rule the custom headers break; empty when they are fine.
    At most 20; names are RFC 9110 tokens, not the engine's own (`Host`, `Content-Type`,
    `webhook-*`, …, case-insensitive), not hop-by-hop and not repeated; values carry no CR, LF,
    NUL or other control character (tab aside) and no lone surrogate; 8 KiB in all."""
    errors: list[tuple[str, str]] = []
    if len(headers) > MAX_HEADERS:
        errors.append(("headers", f"at most {MAX_HEADERS} headers are allowed, got {len(headers)}"))
    total = 0
    seen: set[str] = set()
    for i, h in enumerate(headers):
        # surrogatepass: a lone surrogate is counted here and refused by _value_problem, not raised on
        total += len(h.name.encode("utf-8", "surrogatepass")) + len(h.value.encode("utf-8", "surrogatepass"))
        if i >= MAX_HEADERS:
            continue  # refused as a whole already: no message per header beyond the limit
        problem = _name_problem(h.name, seen)
        if problem:
            errors.append((f"headers.{i}.name", f"header {problem}"))
        seen.add(h.name.lower())
        problem = _value_problem(h.value)
        if problem:
            errors.append((f"headers.{i}.value", f"header {_shown(h.name)} value {problem}"))
    if total > MAX_HEADER_BYTES:
        errors.append(("headers", f"headers exceed {MAX_HEADER_BYTES} bytes in all ({total})"))
    return errors


def header_name_problem(name: str) -> str | None:
    """Why `name` cannot name a header the webhook adds (a custom header, or the integrator HMAC
    header): not an RFC 9110 token, one of the engine's own headers, or a connection header."""
    return _name_problem(name, set())


def _name_problem(name: str, seen: set[str]) -> str | None:
    lowered = name.lower()
    if not _TOKEN.fullmatch(name):
        return f"name {_shown(name)} is not a valid HTTP token"
    if lowered in RESERVED_HEADERS or lowered.startswith("webhook-"):
        return f"{name!r} is set by hookql and cannot be overridden"
    if lowered in CONNECTION_HEADERS:
        return f"{name!r} controls the connection hookql manages and cannot be set"
    if lowered in seen:
        # A repeated name would be sent once (the last value wins): say so instead.
        return f"{_shown(name)} is given more than once"
    return None


def _shown(name: str, limit: int = 64) -> str:
    """`name` quoted for a message, cut short: a message need not echo a huge input back."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + "…"


def _value_problem(value: str) -> str | None:
    if _VALUE_CONTROL.search(value):
        return "must not contain CR, LF, NUL or other control characters"
    if has_lone_surrogate(value):
        return "is not valid Unicode (it contains a lone surrogate)"
    return None
