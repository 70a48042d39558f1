"""Who is signed in, and which POSTs are theirs. Signing in posts the API key once; it is kept in
an HttpOnly, SameSite=Strict cookie scoped to the dashboard (never in a URL, where it would leak
into logs and history). Every state-changing form carries a CSRF token derived from the key (an
HMAC only a holder of the key can compute), on top of SameSite=Strict and an Origin check."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from app.config import Settings
from app.store.apikeys import authenticate
from app.types import Visibility
from app.web.dashboard.layout import SECURITY_HEADERS, problem
from app.web.webhook_form import Form

COOKIE = "hookql_dashboard_key"
MAX_FORM_BYTES = 4096
MAX_FORM_FIELDS = 64


def csrf_token(key: str) -> str:
    return hmac.new(key.encode(), b"hookql dashboard csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    key: str
    visibility: Visibility

    @property
    def csrf(self) -> str:
        return csrf_token(self.key)


class FormTooLarge(Exception):
    pass


async def read_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> Form | None:
    """The urlencoded form of a POST, or None if it is not one we accept; FormTooLarge past
    `max_bytes` (read no further)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise FormTooLarge
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any of our forms has
        return None
    return Form(pairs)


def same_origin(request: Request) -> bool:
    """Browsers send Origin on every POST; a cross-site one is refused even before the CSRF check."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "")


def _valid_post(request: Request, form: Form, current: Session) -> bool:
    return same_origin(request) and hmac.compare_digest(form.get("csrf"), current.csrf)


@dataclass(frozen=True)
class Site:
    """What every page handler is given: the pool, the settings, and the session checks on them."""

    pool: asyncpg.Pool
    settings: Settings

    async def session(self, request: Request) -> Session | None:
        key = request.cookies.get(COOKIE)
        if not key:
            return None
        visibility = await authenticate(self.pool, key)
        return None if visibility is None else Session(key, visibility)

    async def posted(self, request: Request, max_bytes: int = MAX_FORM_BYTES) -> tuple[Session, Form] | Response:
        """The session and form of a state-changing POST, or the refusal: signed in, same
        origin, carrying the CSRF token, and no larger than `max_bytes`."""
        current = await self.session(request)
        try:
            form = await read_form(request, max_bytes)
        except FormTooLarge:
            message = f"The form is larger than {max_bytes // 1024} KiB; nothing was changed."
            return problem(request, current, 413, "Form too large", message)
        if current is None or form is None or not _valid_post(request, form, current):
            return Response("invalid form or expired sign-in", status_code=403, headers=SECURITY_HEADERS)
        return current, form
