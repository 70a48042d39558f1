"""Secrets out of an attempt's record: which header values, URL parts and query parameters of a
request are masked before it is stored (app.store records attempts through `mask_request`).
Pure.

Masked: the values of headers whose names look secret — Authorization and Proxy-Authorization,
Cookie, and any name containing `token`, `key`, `secret`, `password`, `passwd`, `auth`, `session`,
`signature` or `hmac` (`X-Api-Key`, `X-Auth-Token`, `webhook-signature`, an integrator HMAC) —
but for the engine's own headers that only look so (`Idempotency-Key` is the event id); the
password of a URL's `user:password@`; and query parameters named like those headers
(`?token=…`). An `Authorization` value keeps its scheme (`Bearer ••••`): which scheme went out is
useful, and it is not the secret."""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from app.types import SentRequest

MASK = "••••••"
_SECRET_NAME = re.compile(r"token|key|secret|passw|auth|session|signature|hmac|cookie", re.IGNORECASE)
# The engine's headers whose names match the pattern yet carry nothing secret.
_PUBLIC_HEADERS = frozenset({"idempotency-key"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*) +\S")


@functools.lru_cache(maxsize=1024)  # header names repeat on every attempt of a webhook
def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called `name` holds a secret by the rule above."""
    return bool(_SECRET_NAME.search(name)) and name.lower() not in _PUBLIC_HEADERS


def mask_value(name: str, value: str) -> str:
    """`value` as stored for a header called `name`: itself, or masked (keeping an auth scheme)."""
    if not is_secret_name(name):
        return value
    if "auth" in name.lower():
        scheme = _SCHEME.match(value)
        if scheme:
            return f"{scheme.group(1)} {MASK}"
    return MASK


def mask_url(url: str) -> str:
    """`url` without its password and with secret-looking query parameters masked. Most URLs have
    neither `@` nor `?`, and are returned as they are without being parsed."""
    if "@" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
        # Parameter by parameter, the rest left byte for byte as it was.
        query = "&".join(
            f"{piece.partition('=')[0]}={MASK}" if is_secret_name(unquote_plus(piece.partition("=")[0])) else piece
            for piece in parts.query.split("&")
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL we can take apart (it was refused before sending anyway)
        return MASK


def mask_request(request: SentRequest) -> SentRequest:
    """The request as an attempt's record keeps it: the same body, secrets masked."""
    return SentRequest(
        request.method,
        mask_url(request.url),
        tuple((name, mask_value(name, value)) for name, value in request.headers),
        request.body,
    )
