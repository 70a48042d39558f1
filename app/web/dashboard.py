"""The delivery dashboard at /dashboard: server-rendered pages (Jinja2, no front-end build) that show
an API key's webhooks with their health, and per webhook the recent events and their attempts,
with retry/cancel and enable/disable.

Signing in posts the API key once; it is kept in an HttpOnly, SameSite=Strict cookie scoped to the
dashboard (never in a URL, where it would leak into logs and history). Every state-changing form
carries a CSRF token derived from the key (an HMAC only a holder of the key can compute), on top
of SameSite=Strict and an Origin check. Reads are `app.store.dashboard`'s, always filtered by the
key's visibility; changes go through the registration store, so they behave exactly like the
GraphQL mutations."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.config import Settings
from app.store import dashboard as dashboard_store
from app.store import webhooks as webhook_store
from app.store.apikeys import authenticate
from app.store.dashboard import EventSummary, WebhookHealth
from app.types import EventStatus, Visibility

COOKIE = "hookql_dashboard_key"
MAX_FORM_BYTES = 4096
EVENTS_PER_PAGE = 50
ATTEMPTS_PER_EVENT = 10  # the newest; an event may have up to 50
EXCERPT_CHARS = 300
WEBHOOKS_LIMIT = 500

_HERE = Path(__file__).parent
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    """`12 s ago`, `in 3 min`: a glance at a list reads relative times faster than timestamps."""
    if moment is None:
        return "—"
    delta_s = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, delta_s = delta_s < 0, abs(delta_s)
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if delta_s >= unit_s or unit == "s":
            text = f"{int(delta_s // unit_s)} {unit}"
            break
    return f"in {text}" if future else f"{text} ago"


_templates.filters["ago"] = _ago

# Framing would allow click-jacking the buttons; nothing here needs a third-party resource.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it, browsers send `Origin: null` on same-origin form POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def csrf_token(key: str) -> str:
    return hmac.new(key.encode(), b"hookql dashboard csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    key: str
    visibility: Visibility

    @property
    def csrf(self) -> str:
        return csrf_token(self.key)


async def list_webhooks(
    conn: asyncpg.Connection, visibility: Visibility, webhook_id: int | None = None
) -> list[WebhookHealth]:
    return await dashboard_store.webhooks_health(
        conn, visibility.seller_id, webhook_id=webhook_id, limit=WEBHOOKS_LIMIT
    )


async def recent_events(
    conn: asyncpg.Connection, webhook_id: int, status: str | None, before_id: int | None
) -> list[EventSummary]:
    return await dashboard_store.recent_events(
        conn,
        webhook_id,
        status=status,
        before_id=before_id,
        limit=EVENTS_PER_PAGE,
        attempts_per_event=ATTEMPTS_PER_EVENT,
    )


def _excerpt(body: str) -> str:
    """A response body on one line, cut to `EXCERPT_CHARS`."""
    flat = " ".join(body.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


_templates.filters["excerpt"] = _excerpt


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _redirect(request: Request, path: str) -> RedirectResponse:
    # 303: the browser follows a POST with a GET, so a reload does not resubmit the form.
    return RedirectResponse(_base(request) + path, status_code=303, headers=_SECURITY_HEADERS)


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST, or None if it is not one we accept."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _same_origin(request: Request) -> bool:
    """Browsers send Origin on every POST; a cross-site one is refused even before the CSRF check."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "")


def _status_filter(raw: str | None) -> str | None:
    if raw and raw in {s.value for s in EventStatus}:
        return raw
    return None


def dashboard_app(pool: asyncpg.Pool, settings: Settings) -> Starlette:
    """The ASGI app the server mounts at /dashboard."""

    async def session(request: Request) -> Session | None:
        key = request.cookies.get(COOKIE)
        if not key:
            return None
        visibility = await authenticate(pool, key)
        return None if visibility is None else Session(key, visibility)

    def sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
        return _render("dashboard_login.html", status_code, base=_base(request), error=error)

    async def index(request: Request) -> Response:
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        async with pool.acquire() as conn:
            webhooks = await list_webhooks(conn, current.visibility)
        return _render(
            "dashboard_index.html",
            base=_base(request),
            session=current,
            webhooks=webhooks,
            notice=request.query_params.get("notice"),
        )

    async def webhook_page(request: Request) -> Response:
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        webhook_id = _int(request.path_params["webhook_id"])
        status = _status_filter(request.query_params.get("status"))
        before = _int(request.query_params.get("before", "")) or None
        async with pool.acquire() as conn:
            found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
            if not found:
                # Another seller's webhook is indistinguishable from a missing one.
                return _render("dashboard_missing.html", 404, base=_base(request), session=current, what="webhook")
            events = await recent_events(conn, found[0].id, status, before)
        older = None
        if len(events) == EVENTS_PER_PAGE:
            older = "?" + urlencode({k: v for k, v in (("status", status), ("before", events[-1].id)) if v})
        return _render(
            "dashboard_webhook.html",
            base=_base(request),
            session=current,
            webhook=found[0],
            events=events,
            status=status,
            statuses=[s.value for s in EventStatus],
            older=older,
            notice=request.query_params.get("notice"),
        )

    async def login(request: Request) -> Response:
        form = await _form(request)
        if form is None or not _same_origin(request):
            return sign_in_page(request, "The sign-in form could not be read; try again.", 400)
        key = form.get("key", "").strip()
        visibility = await authenticate(pool, key) if key else None
        if visibility is None:
            return sign_in_page(request, "That API key is not valid.", 401)
        response = _redirect(request, "/")
        response.set_cookie(
            COOKIE,
            key,
            path=_base(request) + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        form = await _form(request)
        current = await session(request)
        if current is not None and (form is None or not _valid_post(request, form, current)):
            return Response("invalid form", status_code=403)
        response = _redirect(request, "/")
        response.delete_cookie(COOKIE, path=_base(request) + "/", httponly=True, samesite="strict")
        return response

    async def webhook_action(request: Request) -> Response:
        current = await session(request)
        form = await _form(request)
        if current is None or form is None or not _valid_post(request, form, current):
            return Response("invalid form or expired sign-in", status_code=403)
        webhook_id = _int(request.path_params["webhook_id"])
        action = request.path_params["action"]
        async with pool.acquire() as conn:
            found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
            if not found or action not in ("enable", "disable"):
                return Response("not found", status_code=404)
            notice = await _set_enabled(conn, found[0].id, enabled=action == "enable", visibility=current.visibility)
        return _redirect(request, f"/webhooks/{found[0].id}?" + urlencode({"notice": notice}))

    async def event_action(request: Request) -> Response:
        current = await session(request)
        form = await _form(request)
        if current is None or form is None or not _valid_post(request, form, current):
            return Response("invalid form or expired sign-in", status_code=403)
        event_id = _int(request.path_params["event_id"])
        action = request.path_params["action"]
        async with pool.acquire() as conn:
            webhook_id = await dashboard_store.event_webhook(conn, event_id, current.visibility.seller_id)
            if webhook_id is None or action not in ("retry", "cancel"):
                return Response("not found", status_code=404)
            if action == "retry":
                notice = await _retry_event(conn, event_id, visibility=current.visibility)
            else:
                notice = await _cancel_event(conn, event_id, visibility=current.visibility)
        back = f"/webhooks/{webhook_id}?" + urlencode(
            {k: v for k, v in (("status", _status_filter(form.get("status"))), ("notice", notice)) if v}
        )
        return _redirect(request, back)

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/webhooks/{webhook_id}", webhook_page, methods=["GET"]),
            Route("/webhooks/{webhook_id}/{action}", webhook_action, methods=["POST"]),
            Route("/events/{event_id}/{action}", event_action, methods=["POST"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
    )


def _valid_post(request: Request, form: dict[str, str], current: Session) -> bool:
    return _same_origin(request) and hmac.compare_digest(form.get("csrf", ""), current.csrf)


def _int(raw: str) -> int:
    """A positive id from a URL, or 0 (matches nothing)."""
    return int(raw) if raw.isdigit() and len(raw) < 19 else 0


# The actions. They mirror the API's webhookUpdate(enabled) / webhookEventRetry / webhookEventCancel;
# when app/store/webhooks.py offers them, these should call the store so both share one definition.
# Visibility was checked by the caller; each returns the notice shown on the page.

async def _set_enabled(conn: asyncpg.Connection, webhook_id: int, *, enabled: bool, visibility: Visibility) -> str:
    if enabled:
        await webhook_store.update_webhook(conn, webhook_id, {"enabled": True})
        return "Webhook enabled."
    await webhook_store.disable_webhook(conn, webhook_id, "disabled from the dashboard")
    return "Webhook disabled: nothing is sent until it is enabled again."


async def _retry_event(conn: asyncpg.Connection, event_id: int, *, visibility: Visibility) -> str:
    async with conn.transaction():
        problem = await webhook_store.retry_event(conn, event_id)
    return f"Not retried: {problem}." if problem else "Event queued for another delivery."


async def _cancel_event(conn: asyncpg.Connection, event_id: int, *, visibility: Visibility) -> str:
    async with conn.transaction():
        problem = await webhook_store.cancel_event(conn, event_id)
    return f"Not cancelled: {problem}." if problem else "Event cancelled."
