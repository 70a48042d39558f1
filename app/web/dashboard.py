"""The delivery dashboard at /dashboard: server-rendered pages (Jinja2, no front-end build, no
JavaScript) that show an API key's webhooks with their health and a 24-hour chart, per webhook
the recent events, and per event every attempt with the request it sent (secrets masked, the
exact body) and the answer it got. It creates and edits webhooks (with a query preview), and acts
on events: retry, cancel, send now, resend; on webhooks: enable, disable.

Signing in posts the API key once; it is kept in an HttpOnly, SameSite=Strict cookie scoped to the
dashboard (never in a URL, where it would leak into logs and history). Every state-changing form
carries a CSRF token derived from the key (an HMAC only a holder of the key can compute), on top
of SameSite=Strict and an Origin check. Reads are `app.store.dashboard`'s, always filtered by the
key's visibility; changes go through the functions the GraphQL mutations run (app.api.webhooks),
so they validate and behave exactly alike. URLs take numeric ids and GraphQL IDs alike; another
owner's id, a malformed one and a missing one all get the same "No such …" page."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.api import webhooks as webhook_api
from app.api.context import make_context
from app.api.schema import schema
from app.api.webhook_inputs import clean
from app.api.webhook_types import FieldError
from app.config import Settings
from app.policy import ids
from app.store import dashboard as dashboard_store
from app.store import webhooks as webhook_store
from app.store.apikeys import authenticate
from app.store.dashboard import EventSummary, WebhookHealth
from app.types import EntityType, EventStatus, Visibility
from app.web.charts import delivery_chart
from app.web.webhook_form import Form, WebhookForm

COOKIE = "hookql_dashboard_key"
MAX_FORM_BYTES = 4096
# The webhook form carries a query (a 500-field query is about 20 KB) and up to 8 KiB of headers.
MAX_WEBHOOK_FORM_BYTES = 65536
MAX_FORM_FIELDS = 64
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


class FormTooLarge(Exception):
    pass


async def _form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> Form | None:
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


def _ref(raw: str, type_name: str) -> int:
    """A row id from a URL: a positive number, or a GraphQL ID of `type_name` (`V2ViaG9vazox`);
    0, which matches nothing, for anything else."""
    if raw.isascii() and raw.isdigit() and len(raw) <= ids.MAX_DIGITS:
        return int(raw)
    return ids.decode(raw, type_name) or 0


def _body_text(body: bytes) -> str:
    """A request body as text: the bytes are UTF-8 for every format hookql sends."""
    return body.decode("utf-8", "replace")


_templates.filters["body_text"] = _body_text
_templates.filters["global_id"] = ids.encode

# Event actions: the functions the API's mutations run (app.api.webhooks.event_action).
EVENT_ACTIONS: dict[str, tuple[Any, str, str]] = {
    "retry": (webhook_store.retry_event, "Event queued for another delivery.", "Not retried"),
    "cancel": (webhook_store.cancel_event, "Event cancelled.", "Not cancelled"),
    "send-now": (webhook_store.send_now, "Event due now: it is sent at once.", "Not sent now"),
    "resend": (webhook_api.resend, "Resent: a new event with the same payload is on its way.", "Not resent"),
}


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

    def missing(request: Request, current: Session, what: str) -> HTMLResponse:
        # Another owner's row, a malformed id and a missing row are the same page.
        return _render("dashboard_missing.html", 404, base=_base(request), session=current, what=what)

    async def posted(request: Request, max_bytes: int = MAX_FORM_BYTES) -> tuple[Session, Form] | Response:
        """The session and form of a state-changing POST, or the refusal: signed in, same
        origin, carrying the CSRF token, and no larger than `max_bytes`."""
        current = await session(request)
        try:
            form = await _form(request, max_bytes)
        except FormTooLarge:
            return _render(
                "dashboard_problem.html",
                413,
                base=_base(request),
                session=current,
                title="Form too large",
                message=f"The form is larger than {max_bytes // 1024} KiB; nothing was changed.",
            )
        if current is None or form is None or not _valid_post(request, form, current):
            return Response("invalid form or expired sign-in", status_code=403, headers=_SECURITY_HEADERS)
        return current, form

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
        webhook_id = _ref(request.path_params["webhook_id"], "Webhook")
        status = _status_filter(request.query_params.get("status"))
        before = _ref(request.query_params.get("before", ""), "WebhookEvent") or None
        async with pool.acquire() as conn:
            found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
            if not found:
                return missing(request, current, "webhook")
            events = await recent_events(conn, found[0].id, status, before)
            hours = await dashboard_store.hourly_deliveries(conn, found[0].id)
        older = None
        if len(events) == EVENTS_PER_PAGE:
            older = "?" + urlencode({k: v for k, v in (("status", status), ("before", events[-1].id)) if v})
        return _render(
            "dashboard_webhook.html",
            base=_base(request),
            session=current,
            webhook=found[0],
            chart=delivery_chart(hours),
            events=events,
            status=status,
            statuses=[s.value for s in EventStatus],
            older=older,
            notice=request.query_params.get("notice"),
        )

    async def event_page(request: Request) -> Response:
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        event_id = _ref(request.path_params["event_id"], "WebhookEvent")
        async with pool.acquire() as conn:
            event = await dashboard_store.event(conn, event_id, current.visibility.seller_id) if event_id else None
            if event is None:
                return missing(request, current, "event")
            attempts = await dashboard_store.attempt_details(conn, event.id)
        return _render(
            "dashboard_event.html",
            base=_base(request),
            session=current,
            e=event,
            attempts=attempts,
            notice=request.query_params.get("notice"),
        )

    async def attempt_body(request: Request) -> Response:
        """The exact bytes an attempt sent, as a download."""
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        attempt_id = _ref(request.path_params["attempt_id"], "WebhookAttempt")
        async with pool.acquire() as conn:
            seller_id = current.visibility.seller_id
            body = await dashboard_store.attempt_body(conn, attempt_id, seller_id) if attempt_id else None
        if body is None:
            return missing(request, current, "attempt")
        return Response(
            body,
            media_type="application/octet-stream",
            headers={**_SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="attempt-{attempt_id}-body"'},
        )

    async def login(request: Request) -> Response:
        try:
            form = await _form(request)
        except FormTooLarge:
            form = None
        if form is None or not _same_origin(request):
            return sign_in_page(request, "The sign-in form could not be read; try again.", 400)
        key = form.get("key").strip()
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
        current = await session(request)
        if current is not None:
            checked = await posted(request)
            if isinstance(checked, Response):
                return checked
        response = _redirect(request, "/")
        response.delete_cookie(COOKIE, path=_base(request) + "/", httponly=True, samesite="strict")
        return response

    async def webhook_action(request: Request) -> Response:
        checked = await posted(request)
        if isinstance(checked, Response):
            return checked
        current, _ = checked
        webhook_id = _ref(request.path_params["webhook_id"], "Webhook")
        action = request.path_params["action"]
        async with pool.acquire() as conn:
            found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
            if not found or action not in ("enable", "disable"):
                return missing(request, current, "webhook")
            notice = await _set_enabled(conn, found[0].id, enabled=action == "enable")
        return _redirect(request, f"/webhooks/{found[0].id}?" + urlencode({"notice": notice}))

    async def event_action(request: Request) -> Response:
        checked = await posted(request)
        if isinstance(checked, Response):
            return checked
        current, form = checked
        event_id = _ref(request.path_params["event_id"], "WebhookEvent")
        known = EVENT_ACTIONS.get(request.path_params["action"])
        async with pool.acquire() as conn:
            webhook_id = (
                await dashboard_store.event_webhook(conn, event_id, current.visibility.seller_id) if event_id else None
            )
            if webhook_id is None or known is None:
                return missing(request, current, "event")
            action, done, refused = known
            async with conn.transaction():
                problem, shown = await webhook_api.event_action(conn, current.visibility, event_id, action)
        notice = f"{refused}: {problem}." if problem else done
        if form.get("back") == "event":
            return _redirect(request, f"/events/{shown or event_id}?" + urlencode({"notice": notice}))
        back = f"/webhooks/{webhook_id}?" + urlencode(
            {k: v for k, v in (("status", _status_filter(form.get("status"))), ("notice", notice)) if v}
        )
        return _redirect(request, back)

    # -- creating and editing webhooks ---------------------------------------------------------

    def form_page(
        request: Request,
        current: Session,
        form: WebhookForm,
        *,
        webhook: Any = None,
        preview: str | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        return _render(
            "dashboard_form.html",
            status_code,
            base=_base(request),
            session=current,
            form=form,
            webhook=webhook,
            preview=preview,
            entity_types=[t.value for t in EntityType],
        )

    async def validate(ctx: Any, given: Any, current: asyncpg.Record | None) -> list[FieldError]:
        """The API's validation of an input (`clean`, as webhookCreate and webhookUpdate run it)."""
        _, errors = await clean(
            schema,
            given,
            current=None if current is None else dict(current),
            viewer=ctx.viewer,
            allow_private=settings.allow_private_targets,
            settings=settings,
        )
        return errors

    async def run_preview(current: Session, form: WebhookForm) -> tuple[WebhookForm, str | None]:
        """The form's query previewed against its entity, as webhookPreview does it."""
        try:
            entity_type = EntityType(form.type)
        except ValueError:
            return form.with_errors([FieldError(field="type", message="choose the webhook's type")]), None
        raw = form.entity_id
        if not raw:
            message = "give the id of an entity to preview against (a number, or a GraphQL ID)"
            return form.with_errors([FieldError(field="entityId", message=message)]), None
        entity_id = ids.encode(entity_type.graphql_name, int(raw)) if _ref(raw, "") else raw
        ctx = make_context(pool, current.visibility, settings)
        result = await webhook_api.preview(schema, ctx, entity_type, form.query, entity_id)
        if result.errors:
            return form.with_errors(result.errors), None
        return form, json.dumps(result.body, indent=2, ensure_ascii=False)

    async def owned_webhook(current: Session, raw_id: str) -> asyncpg.Record | None:
        webhook_id = _ref(raw_id, "Webhook")
        if not webhook_id:
            return None
        async with pool.acquire() as conn:
            return await webhook_store.get_webhook(conn, webhook_id, current.visibility.seller_id)

    async def new_webhook(request: Request) -> Response:
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        return form_page(request, current, WebhookForm())

    async def create_webhook(request: Request) -> Response:
        checked = await posted(request, MAX_WEBHOOK_FORM_BYTES)
        if isinstance(checked, Response):
            return checked
        current, raw = checked
        form = WebhookForm.posted(raw)
        if raw.get("do") == "preview":
            form, body = await run_preview(current, form)
            return form_page(request, current, form, preview=body, status_code=200 if body else 400)
        given, errors = form.create_input()
        ctx = make_context(pool, current.visibility, settings)
        if given is not None and errors:  # the API's rules on the rest of the form, nothing stored
            errors += await validate(ctx, given, None)
        elif given is not None:
            created = await webhook_api.create_webhook(schema, ctx, given)
            errors = created.errors
        if errors or given is None:
            return form_page(request, current, form.with_errors(errors), status_code=400)
        return _render(
            "dashboard_created.html",
            201,
            base=_base(request),
            session=current,
            webhook=created.webhook,
            secret=created.secret,
        )

    async def edit_webhook(request: Request) -> Response:
        current = await session(request)
        if current is None:
            return sign_in_page(request)
        row = await owned_webhook(current, request.path_params["webhook_id"])
        if row is None:
            return missing(request, current, "webhook")
        return form_page(request, current, WebhookForm.of_webhook(row), webhook=row)

    async def update_webhook(request: Request) -> Response:
        checked = await posted(request, MAX_WEBHOOK_FORM_BYTES)
        if isinstance(checked, Response):
            return checked
        current, raw = checked
        row = await owned_webhook(current, request.path_params["webhook_id"])
        if row is None:
            return missing(request, current, "webhook")
        form = WebhookForm.posted(raw)
        if raw.get("do") == "preview":
            form, body = await run_preview(current, form)
            return form_page(request, current, form, webhook=row, preview=body, status_code=200 if body else 400)
        given, errors = form.update_input(row)
        ctx = make_context(pool, current.visibility, settings)
        if given is not None and errors:  # the API's rules on the rest of the form, nothing stored
            errors += await validate(ctx, given, row)
        elif given is not None:
            errors = (await webhook_api.update_webhook(schema, ctx, ids.encode("Webhook", row["id"]), given)).errors
        if errors or given is None:
            return form_page(request, current, form.with_errors(errors), webhook=row, status_code=400)
        return _redirect(request, f"/webhooks/{row['id']}?" + urlencode({"notice": "Webhook saved."}))

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/webhooks/new", new_webhook, methods=["GET"]),
            Route("/webhooks/new", create_webhook, methods=["POST"]),
            Route("/webhooks/{webhook_id}", webhook_page, methods=["GET"]),
            Route("/webhooks/{webhook_id}/edit", edit_webhook, methods=["GET"]),
            Route("/webhooks/{webhook_id}/edit", update_webhook, methods=["POST"]),
            Route("/webhooks/{webhook_id}/{action}", webhook_action, methods=["POST"]),
            Route("/events/{event_id}", event_page, methods=["GET"]),
            Route("/events/{event_id}/{action}", event_action, methods=["POST"]),
            Route("/attempts/{attempt_id}/body", attempt_body, methods=["GET"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
    )


def _valid_post(request: Request, form: Form, current: Session) -> bool:
    return _same_origin(request) and hmac.compare_digest(form.get("csrf"), current.csrf)


async def _set_enabled(conn: asyncpg.Connection, webhook_id: int, *, enabled: bool) -> str:
    """Enable or disable a webhook the caller checked the viewer may see; the notice to show."""
    if enabled:
        await webhook_store.update_webhook(conn, webhook_id, {"enabled": True})
        return "Webhook enabled."
    await webhook_store.disable_webhook(conn, webhook_id, "disabled from the dashboard")
    return "Webhook disabled: nothing is sent until it is enabled again."
