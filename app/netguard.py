"""Where webhooks may point: URL shape, forbidden address ranges (SSRF), and custom headers."""

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
MAX_HEADER_BYTES = 8 * 1024  # names + values, all headers together

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORBIDDEN_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
        "64:ff9b::/96",
        "fd00:ec2::254/128",
    )
]
# Cloud metadata endpoints (169.254.169.254 and the like are inside the ranges above already;
# named here so the message says why).
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}

# RFC 9110 token: 1*tchar
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED = {
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "idempotency-key",
    "webhook-sequence",
}


def is_forbidden_ip(ip: IPAddress) -> bool:
    """True for loopback, private, link-local, CGNAT, multicast, reserved and metadata addresses
    (IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return True
    return any(ip in net for net in _FORBIDDEN_NETWORKS) or ip.is_private or ip.is_reserved


def describe_forbidden(ip: IPAddress) -> str:
    return "a cloud metadata address" if ip in _METADATA else "a private, loopback or reserved address"


def validate_url(url: str) -> str | None:
    """The reason `url` cannot be a webhook target, or None. Userinfo and query are kept."""
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if any(c in url for c in "\r\n\t\0 "):
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
    return None


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def check_host(host: str, allow_private: bool) -> str | None:
    """Resolve `host` and refuse it when any address it resolves to is forbidden."""
    if allow_private:
        return None
    ip = literal_ip(host)
    if ip is not None:
        return f"{host} is {describe_forbidden(ip)}" if is_forbidden_ip(ip) else None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        # Not resolvable now is not a reason to refuse: DNS may lag a new receiver, and the same
        # check runs on the address actually connected to at delivery time.
        return None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if is_forbidden_ip(address):
            return f"{host} resolves to {address}, {describe_forbidden(address)}"
    return None


def validate_headers(headers: Sequence[Header]) -> list[tuple[str, str]]:
    """(field, message) for every rule the custom headers break; empty when they are fine."""
    errors: list[tuple[str, str]] = []
    if len(headers) > MAX_HEADERS:
        errors.append(("headers", f"at most {MAX_HEADERS} headers are allowed, got {len(headers)}"))
    total = 0
    for i, h in enumerate(headers):
        field = f"headers.{i}"
        total += len(h.name.encode()) + len(h.value.encode())
        if not _TOKEN.match(h.name):
            errors.append((f"{field}.name", f"header name {h.name!r} is not a valid HTTP token"))
        elif h.name.lower() in _RESERVED or h.name.lower().startswith("webhook-"):
            errors.append((f"{field}.name", f"header {h.name!r} is set by hookql and cannot be overridden"))
        if any(c in h.value for c in "\r\n\0"):
            errors.append((f"{field}.value", f"header {h.name!r} value must not contain CR, LF or NUL"))
    if total > MAX_HEADER_BYTES:
        errors.append(("headers", f"headers exceed {MAX_HEADER_BYTES} bytes in all ({total})"))
    return errors
