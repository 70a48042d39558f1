"""Where webhooks may point: URL shape, forbidden address ranges (SSRF), and custom headers.

Registration runs `validate_url` + `check_host` + `validate_headers`; the transport runs
`is_forbidden_ip` again on the address it actually connects to, so a DNS answer that changed
after registration (rebinding) cannot reach an internal service."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.models import Header

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

# RFC 9110 token: 1*tchar
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A DNS label after IDNA encoding; `_` is tolerated because real hosts use it (SRV-style names).
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
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
    if literal_ip(host) is not None:
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return f"URL host {host!r} is not a valid host name"
    labels = ascii_host.removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"URL host {host!r} is not a valid host name"
    if labels[-1].isdigit():
        # No top-level domain is numeric: this is an IPv4 address in a shorthand (`127.1`,
        # `2130706433`) that resolvers accept but HTTP clients refuse.
        return f"URL host {host!r} is not a valid host name or canonical IP address"
    return None


def validate_url(url: str) -> str | None:
    """The reason `url` cannot be a webhook target, or None. Absolute http/https, at most 2,048
    characters, with a host; userinfo and query strings are kept (receivers authenticate so).
    Addresses are judged separately by `check_host` (needs DNS)."""
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "URL must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"URL is malformed: {exc}"
    if parts.scheme not in ("http", "https"):
        return "URL must be absolute and use http or https"
    if not parts.hostname:
        return "URL has no host"
    if port == 0:
        return "URL port must be 1-65535"
    return _host_problem(parts.hostname)


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
    `webhook-*`, …, case-insensitive) and not repeated; values carry no CR/LF/NUL; 8 KiB in all."""
    errors: list[tuple[str, str]] = []
    if len(headers) > MAX_HEADERS:
        errors.append(("headers", f"at most {MAX_HEADERS} headers are allowed, got {len(headers)}"))
    total = 0
    seen: set[str] = set()
    for i, h in enumerate(headers):
        field = f"headers.{i}"
        total += len(h.name.encode()) + len(h.value.encode())
        lowered = h.name.lower()
        if not _TOKEN.match(h.name):
            errors.append((f"{field}.name", f"header name {h.name!r} is not a valid HTTP token"))
        elif lowered in RESERVED_HEADERS or lowered.startswith("webhook-"):
            errors.append((f"{field}.name", f"header {h.name!r} is set by hookql and cannot be overridden"))
        elif lowered in seen:
            # A repeated name would be sent once (the last value wins): say so instead.
            errors.append((f"{field}.name", f"header {h.name!r} is given more than once"))
        seen.add(lowered)
        if any(c in h.value for c in "\r\n\0"):
            errors.append((f"{field}.value", f"header {h.name!r} value must not contain CR, LF or NUL"))
    if total > MAX_HEADER_BYTES:
        errors.append(("headers", f"headers exceed {MAX_HEADER_BYTES} bytes in all ({total})"))
    return errors
