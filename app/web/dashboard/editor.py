"""The webhook form page: creating and editing a webhook, with a preview of its query against an
entity. Input goes through the functions the GraphQL mutations run (app.api.webhooks), so the
form and the API validate and behave exactly alike."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import asyncpg
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.api import webhooks as webhook_api
from app.api.context import make_context
from app.api.schema import schema
from app.api.webhook_inputs import clean
from app.api.webhook_types import FieldError
from app.policy import ids
from app.store import webhooks as webhook_store
from app.types import EntityType
from app.web.dashboard.layout import base, missing, redirect, ref, render, sign_in_page
from app.web.dashboard.session import Session, Site
from app.web.webhook_form import WebhookForm

# The webhook form carries a query (a 500-field query is about 20 KB) and up to 8 KiB of headers.
MAX_WEBHOOK_FORM_BYTES = 65536


def form_page(
    request: Request,
    current: Session,
    form: WebhookForm,
    *,
    webhook: Any = None,
    preview: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        "dashboard_form.html",
        status_code,
        base=base(request),
        session=current,
        form=form,
        webhook=webhook,
        preview=preview,
        entity_types=[t.value for t in EntityType],
    )


async def _validate(site: Site, ctx: Any, given: Any, current: asyncpg.Record | None) -> list[FieldError]:
    """The API's validation of an input (`clean`, as webhookCreate and webhookUpdate run it)."""
    _, errors = await clean(
        schema,
        given,
        current=None if current is None else dict(current),
        viewer=ctx.viewer,
        allow_private=site.settings.allow_private_targets,
        settings=site.settings,
    )
    return errors


async def _preview(site: Site, current: Session, form: WebhookForm) -> tuple[WebhookForm, str | None]:
    """The form's query previewed against its entity, as webhookPreview does it."""
    try:
        entity_type = EntityType(form.type)
    except ValueError:
        return form.with_errors([FieldError(field="type", message="choose the webhook's type")]), None
    raw = form.entity_id
    if not raw:
        message = "give the id of an entity to preview against (a number, or a GraphQL ID)"
        return form.with_errors([FieldError(field="entityId", message=message)]), None
    entity_id = ids.encode(entity_type.graphql_name, int(raw)) if ref(raw, "") else raw
    ctx = make_context(site.pool, current.visibility, site.settings)
    result = await webhook_api.preview(schema, ctx, entity_type, form.query, entity_id)
    if result.errors:
        return form.with_errors(result.errors), None
    return form, json.dumps(result.body, indent=2, ensure_ascii=False)


async def _owned_webhook(site: Site, current: Session, raw_id: str) -> asyncpg.Record | None:
    webhook_id = ref(raw_id, "Webhook")
    if not webhook_id:
        return None
    async with site.pool.acquire() as conn:
        return await webhook_store.get_webhook(conn, webhook_id, current.visibility.seller_id)


async def new_webhook(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    return form_page(request, current, WebhookForm())


async def create_webhook(site: Site, request: Request) -> Response:
    checked = await site.posted(request, MAX_WEBHOOK_FORM_BYTES)
    if isinstance(checked, Response):
        return checked
    current, raw = checked
    form = WebhookForm.posted(raw)
    if raw.get("do") == "preview":
        form, body = await _preview(site, current, form)
        return form_page(request, current, form, preview=body, status_code=200 if body else 400)
    given, errors = form.create_input()
    ctx = make_context(site.pool, current.visibility, site.settings)
    if given is not None and errors:  # the API's rules on the rest of the form, nothing stored
        errors += await _validate(site, ctx, given, None)
    elif given is not None:
        created = await webhook_api.create_webhook(schema, ctx, given)
        errors = created.errors
    if errors or given is None:
        return form_page(request, current, form.with_errors(errors), status_code=400)
    return render(
        "dashboard_created.html",
        201,
        base=base(request),
        session=current,
        webhook=created.webhook,
        secret=created.secret,
    )


async def edit_webhook(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is None:
        return sign_in_page(request)
    row = await _owned_webhook(site, current, request.path_params["webhook_id"])
    if row is None:
        return missing(request, current, "webhook")
    return form_page(request, current, WebhookForm.of_webhook(row), webhook=row)


async def update_webhook(site: Site, request: Request) -> Response:
    checked = await site.posted(request, MAX_WEBHOOK_FORM_BYTES)
    if isinstance(checked, Response):
        return checked
    current, raw = checked
    row = await _owned_webhook(site, current, request.path_params["webhook_id"])
    if row is None:
        return missing(request, current, "webhook")
    form = WebhookForm.posted(raw)
    if raw.get("do") == "preview":
        form, body = await _preview(site, current, form)
        return form_page(request, current, form, webhook=row, preview=body, status_code=200 if body else 400)
    given, errors = form.update_input(row)
    ctx = make_context(site.pool, current.visibility, site.settings)
    if given is not None and errors:  # the API's rules on the rest of the form, nothing stored
        errors += await _validate(site, ctx, given, row)
    elif given is not None:
        errors = (await webhook_api.update_webhook(schema, ctx, ids.encode("Webhook", row["id"]), given)).errors
    if errors or given is None:
        return form_page(request, current, form.with_errors(errors), webhook=row, status_code=400)
    return redirect(request, f"/webhooks/{row['id']}?" + urlencode({"notice": "Webhook saved."}))
