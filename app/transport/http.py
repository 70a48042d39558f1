"""One delivery attempt over HTTP with aiohttp. Returns a SendResult; never raises for HTTP,
network or policy failures — the dispatcher decides what an outcome means."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from app import __version__
from app.policy.envelope import PayloadJSON
from app.policy.signing import integrator_hmac, sign
from app.transport.netguard import describe_forbidden, is_forbidden_ip, literal_ip
from app.types import Format, Outgoing, SendResult, SentRequest

RESPONSE_BODY_LIMIT = 4096  # bytes of a receiver's answer kept in the attempt log
USER_AGENT = f"hookql/{__version__}"
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class BlockedAddress(OSError):
    pass


class _GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver and drops forbidden addresses, so the check
    applies to the address actually connected to (a DNS answer that changed since validation —
    rebinding — is caught here)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not is_forbidden_ip(literal_ip(r["host"]) or _never())]
        if not allowed:
            ip = literal_ip(results[0]["host"]) if results else None
            what = f"{ip}, {describe_forbidden(ip)}" if ip else "nothing"
            raise BlockedAddress(f"blocked: {host} resolves to {what}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _never() -> Any:
    raise ValueError("resolver returned a non-IP host")


def render_body(body: dict[str, Any], fmt: Format) -> tuple[bytes, str]:
    """The bytes sent for a delivery body and their Content-Type."""
    payload = body.get("payload")
    if fmt is Format.JSON:
        if isinstance(payload, PayloadJSON):
            # The stored text goes out as is; "payload" is the body's last key (build_body).
            head = orjson.dumps({k: v for k, v in body.items() if k != "payload"})
            return head[:-1] + b',"payload":' + payload.encode() + b"}", "application/json"
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"
    if isinstance(payload, PayloadJSON):
        body = {**body, "payload": json.loads(payload)}
    if fmt is Format.XML:
        xml = '<?xml version="1.0" encoding="UTF-8"?>' + _xml("notification", body)
        return xml.encode(), "application/xml"
    fields = {
        "id": body.get("id", ""),
        "event": body.get("event", ""),
        "sequence": body.get("sequence", ""),
        "created_at": body.get("created_at", ""),
        "payload": json.dumps(body.get("payload"), separators=(",", ":"), ensure_ascii=False),
    }
    return urlencode(fields).encode(), "application/x-www-form-urlencoded"


def signed_request(out: Outgoing, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The exact body and headers of an attempt made at `now`: the webhook's own headers, then
    Content-Type, User-Agent and the Standard Webhooks set, signed with every live secret, and the
    integrator's HMAC header when the webhook has a key. What the transport sends, and what
    `hookql listen` is handed to forward (app.api.listen)."""
    body, content_type = render_body(out.body, out.format)
    timestamp_s = int(now.timestamp())
    headers: dict[str, str] = {h.name: h.value for h in out.headers}
    headers.update(
        {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            "webhook-id": out.message_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": sign(out.secrets, out.message_id, timestamp_s, body),
            "Idempotency-Key": out.message_id,
            "Webhook-Sequence": str(out.sequence),
        }
    )
    if out.hmac_key and out.hmac_header:  # its name was checked against the ones above at registration
        headers[out.hmac_header] = integrator_hmac(out.hmac_key, body)
    return body, headers


def _xml(name: str, value: Any) -> str:
    tag = name if _XML_NAME.match(name) and not name.lower().startswith("xml") else "field"
    attr = "" if tag == name else f' name="{escape(name, {chr(34): "&quot;"})}"'
    if value is None:
        return f"<{tag}{attr}/>"
    if isinstance(value, dict):
        inner = "".join(_xml(str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(_xml("item", v) for v in value)
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value))
    return f"<{tag}{attr}>{inner}</{tag}>"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class Transport:
    """Holds the shared aiohttp sessions (keep-alive pools); `send` makes one attempt."""

    def __init__(self) -> None:
        self._guarded: aiohttp.ClientSession | None = None
        self._open: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Per-host limits are the dispatcher's business (per-webhook concurrency), not the pool's.
        self._guarded = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, resolver=_GuardedResolver()), auto_decompress=True
        )
        self._open = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        for session in (self._guarded, self._open):
            if session is not None:
                await session.close()

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, out: Outgoing) -> SendResult:
        started_at = datetime.now(UTC)
        t0 = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - t0) * 1000)

        session = self._open if out.allow_private_targets else self._guarded
        if session is None:
            raise RuntimeError("Transport.start() was not called")
        if not out.allow_private_targets:
            ip = literal_ip(urlsplit(out.url).hostname or "")
            if ip is not None and is_forbidden_ip(ip):
                return SendResult(started_at, elapsed_ms(), error=f"blocked: {ip} is {describe_forbidden(ip)}")

        body, headers = signed_request(out, started_at)
        # What the attempt sends, for its record; with an answer, the headers aiohttp actually
        # sent (Host, Content-Length, Accept … included), which are what the receiver saw.
        sent = SentRequest(out.method.value, out.url, tuple(headers.items()), body)
        try:
            async with session.request(
                out.method.value,
                out.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=out.timeout_s),
            ) as resp:
                raw = await _read_prefix(resp)
                return SendResult(
                    started_at=started_at,
                    duration_ms=elapsed_ms(),
                    status_code=resp.status,
                    response_headers={str(k): v for k, v in resp.headers.items()},  # plain str, not multidict's istr
                    response_body=raw.decode("utf-8", errors="replace"),
                    retry_after_s=parse_retry_after(resp.headers.get("Retry-After"), datetime.now(UTC)),
                    request=SentRequest(sent.method, sent.url, tuple(resp.request_info.headers.items()), body),
                )
        except TimeoutError:
            return SendResult(started_at, elapsed_ms(), error=f"timeout after {out.timeout_s:g} s", request=sent)
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, BlockedAddress):
                return SendResult(started_at, elapsed_ms(), error=str(cause), request=sent)
            return SendResult(
                started_at, elapsed_ms(), error=f"connection failed: {cause.strerror or cause}", request=sent
            )
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            return SendResult(started_at, elapsed_ms(), error=f"{type(exc).__name__}: {exc}", request=sent)
        except ValueError as exc:  # a request aiohttp refuses to build (e.g. URL credentials + Authorization)
            return SendResult(started_at, elapsed_ms(), error=f"request refused before sending: {exc}")


async def _read_prefix(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_BODY_LIMIT:
        chunk = await resp.content.read(RESPONSE_BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
