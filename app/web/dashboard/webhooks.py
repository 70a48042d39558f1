"""The webhook list (the dashboard's home: each webhook with its health) and one webhook's page
(its 24-hour chart and recent events, by status, 50 at a time), with enable and disable."""

from __future__ import annotations

from urllib.parse import urlencode

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from app.store import dashboard as dashboard_store
from app.store import webhooks as webhook_store
from app.store.dashboard import EventSummary, WebhookHealth
from app.types import EventStatus, Visibility
from app.web.charts import delivery_chart
from app.web.dashboard.layout import base, missing, redirect, ref, render, sign_in_page
from app.web.dashboard.session import Site

EVENTS_PER_PAGE = 50
ATTEMPTS_PER_EVENT = 10  # the newest; an event may have up to 50
WEBHOOKS_LIMIT = 500


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


def status_filter(raw: str | None) -> str | None:
    if raw and raw in {s.value for s in EventStatus}:
        return raw
    return None


async def index(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    async with site.pool.acquire() as conn:
        webhooks = await list_webhooks(conn, current.visibility)
    return render(
        "dashboard_index.html",
        base=base(request),
        session=current,
        webhooks=webhooks,
        notice=request.query_params.get("notice"),
    )


async def webhook_page(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    webhook_id = ref(request.path_params["webhook_id"], "Webhook")
    status = status_filter(request.query_params.get("status"))
    before = ref(request.query_params.get("before", ""), "WebhookEvent") or None
    async with site.pool.acquire() as conn:
        found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
        if not found:
            return missing(request, current, "webhook")
        events = await recent_events(conn, found[0].id, status, before)
        hours = await dashboard_store.hourly_deliveries(conn, found[0].id)
    older = None
    if len(events) == EVENTS_PER_PAGE:
        older = "?" + urlencode({k: v for k, v in (("status", status), ("before", events[-1].id)) if v})
    return render(
        "dashboard_webhook.html",
        base=base(request),
        session=current,
        webhook=found[0],
        chart=delivery_chart(hours),
        events=events,
        status=status,
        statuses=[s.value for s in EventStatus],
        older=older,
        notice=request.query_params.get("notice"),
    )


async def webhook_action(site: Site, request: Request) -> Response:
    checked = await site.posted(request)
    if isinstance(checked, Response):
        return checked
    current, _ = checked
    webhook_id = ref(request.path_params["webhook_id"], "Webhook")
    action = request.path_params["action"]
    async with site.pool.acquire() as conn:
        found = await list_webhooks(conn, current.visibility, webhook_id) if webhook_id else []
        if not found or action not in ("enable", "disable"):
            return missing(request, current, "webhook")
        notice = await _set_enabled(conn, found[0].id, enabled=action == "enable")
    return redirect(request, f"/webhooks/{found[0].id}?" + urlencode({"notice": notice}))


async def _set_enabled(conn: asyncpg.Connection, webhook_id: int, *, enabled: bool) -> str:
    """Enable or disable a webhook the caller checked the viewer may see; the notice to show."""
    if enabled:
        await webhook_store.update_webhook(conn, webhook_id, {"enabled": True})
        return "Webhook enabled."
    await webhook_store.disable_webhook(conn, webhook_id, "disabled from the dashboard")
    return "Webhook disabled: nothing is sent until it is enabled again."
