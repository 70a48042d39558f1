"""One event's page (every attempt with the request it sent, secrets masked, and the answer it
got), its actions (retry, cancel, send now, resend) and an attempt's exact body as a download."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from app.api import webhooks as webhook_api
from app.store import dashboard as dashboard_store
from app.store import webhooks as webhook_store
from app.web.dashboard.layout import SECURITY_HEADERS, base, missing, redirect, ref, render, sign_in_page
from app.web.dashboard.session import Site
from app.web.dashboard.webhooks import status_filter

# Event actions: the functions the API's mutations run (app.api.webhooks.event_action).
EVENT_ACTIONS: dict[str, tuple[Any, str, str]] = {
    "retry": (webhook_store.retry_event, "Event queued for another delivery.", "Not retried"),
    "cancel": (webhook_store.cancel_event, "Event cancelled.", "Not cancelled"),
    "send-now": (webhook_store.send_now, "Event due now: it is sent at once.", "Not sent now"),
    "resend": (webhook_api.resend, "Resent: a new event with the same payload is on its way.", "Not resent"),
}


async def event_page(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    event_id = ref(request.path_params["event_id"], "WebhookEvent")
    async with site.pool.acquire() as conn:
        event = await dashboard_store.event(conn, event_id, current.visibility.seller_id) if event_id else None
        if event is None:
            return missing(request, current, "event")
        attempts = await dashboard_store.attempt_details(conn, event.id)
    return render(
        "dashboard_event.html",
        base=base(request),
        session=current,
        e=event,
        attempts=attempts,
        notice=request.query_params.get("notice"),
    )


async def attempt_body(site: Site, request: Request) -> Response:
    """The exact bytes an attempt sent, as a download."""
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    attempt_id = ref(request.path_params["attempt_id"], "WebhookAttempt")
    async with site.pool.acquire() as conn:
        seller_id = current.visibility.seller_id
        body = await dashboard_store.attempt_body(conn, attempt_id, seller_id) if attempt_id else None
    if body is None:
        return missing(request, current, "attempt")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="attempt-{attempt_id}-body"'},
    )


async def event_action(site: Site, request: Request) -> Response:
    checked = await site.posted(request)
    if isinstance(checked, Response):
        return checked
    current, form = checked
    event_id = ref(request.path_params["event_id"], "WebhookEvent")
    known = EVENT_ACTIONS.get(request.path_params["action"])
    async with site.pool.acquire() as conn:
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
        return redirect(request, f"/events/{shown or event_id}?" + urlencode({"notice": notice}))
    back = f"/webhooks/{webhook_id}?" + urlencode(
        {k: v for k, v in (("status", status_filter(form.get("status"))), ("notice", notice)) if v}
    )
    return redirect(request, back)
