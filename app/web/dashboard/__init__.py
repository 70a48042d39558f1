"""The delivery dashboard at /dashboard: server-rendered pages (Jinja2, no front-end build, no
JavaScript) that show an API key's webhooks with their health and a 24-hour chart, per webhook
the recent events, and per event every attempt with the request it sent (secrets masked, the
exact body) and the answer it got. It creates and edits webhooks (with a query preview), and acts
on events: retry, cancel, send now, resend; on webhooks: enable, disable.

One module per page — `webhooks` (the list and one webhook), `events` (one event and its
attempts), `editor` (the webhook form), `sign_in` — over the shared `layout` (templates, headers,
the common pages) and `session` (the key's cookie, CSRF, the checks on a POST). Reads are
`app.store.dashboard`'s, always filtered by the key's visibility; changes go through the functions
the GraphQL mutations run (app.api.webhooks), so they validate and behave exactly alike. URLs take
numeric ids and GraphQL IDs alike; another owner's id, a malformed one and a missing one all get
the same "No such …" page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.config import Settings
from app.web.dashboard import editor, events, sign_in, webhooks
from app.web.dashboard.layout import WEB_DIR
from app.web.dashboard.session import Site, csrf_token

__all__ = ["csrf_token", "dashboard_app"]


def dashboard_app(pool: asyncpg.Pool, settings: Settings) -> Starlette:
    """The ASGI app the server mounts at /dashboard."""
    site = Site(pool, settings)

    def route(path: str, page: Callable[[Site, Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, partial(page, site), methods=[method])

    # Order matters: `/webhooks/new` before `/webhooks/{webhook_id}`, `…/edit` before `…/{action}`.
    return Starlette(
        routes=[
            route("/", webhooks.index, "GET"),
            route("/login", sign_in.login, "POST"),
            route("/logout", sign_in.logout, "POST"),
            route("/webhooks/new", editor.new_webhook, "GET"),
            route("/webhooks/new", editor.create_webhook, "POST"),
            route("/webhooks/{webhook_id}", webhooks.webhook_page, "GET"),
            route("/webhooks/{webhook_id}/edit", editor.edit_webhook, "GET"),
            route("/webhooks/{webhook_id}/edit", editor.update_webhook, "POST"),
            route("/webhooks/{webhook_id}/{action}", webhooks.webhook_action, "POST"),
            route("/events/{event_id}", events.event_page, "GET"),
            route("/events/{event_id}/{action}", events.event_action, "POST"),
            route("/attempts/{attempt_id}/body", events.attempt_body, "GET"),
            Mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static"),
        ]
    )
