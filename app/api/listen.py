"""`hookql listen`'s GraphQL: hold a webhook for a listener (a temporary one of its own, or an
existing one), hand it each delivery over the websocket as the exact signed request the
dispatcher would send, and record the answer it got from its local target as the attempt.

    mutation      webhookListen(input) → the held webhook (and a temporary one's secret)
    subscription  webhookListenDeliveries(webhookId) → each due event as method, headers, body
    mutation      webhookListenReport(input) → the local answer recorded: 2xx delivers, else retry
    mutation      webhookListenRenew(webhookId) / webhookListenStop(webhookId)

The server never connects to the local target (the `forwardTo` URL is only shown), so listening
works with private targets disallowed and against a remote server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.api import listen_deliveries as deliveries
from app.api.context import Context, Info
from app.api.ids import to_global_id
from app.api.subscriptions import KeySubscriptions
from app.api.webhook_inputs import WebhookCreateInput, clean, text_problems
from app.api.webhook_types import FieldError, Webhook, WebhookEvent, WebhookEventType, WebhookHeader, WebhookType
from app.api.webhooks import seller_problem
from app.policy.ids import decode
from app.policy.signing import new_secret
from app.store import db
from app.store import listen as listen_store
from app.store import webhooks as webhook_store
from app.transport.http import RESPONSE_BODY_LIMIT, parse_retry_after
from app.transport.netguard import parse_target
from app.types import SendResult

POLL_INTERVAL_S = 0.25  # how often a listener's subscription looks for due events
HOLD_CHECK_EVERY = 20  # polls (5 s): a subscription whose webhook is no longer held ends
log = logging.getLogger(__name__)

MAX_REPORTED_HEADERS = 100  # response headers kept of a reported answer …
MAX_REPORTED_HEADER_BYTES = 16 * 1024  # … and their size in all
MAX_REPORTED_ERROR_CHARS = 1000
MAX_REPORTED_DURATION_MS = 10 * 60 * 1000


@strawberry.input(description="Hold a webhook for `hookql listen`: `webhookId`, or the `type` of a temporary one")
class WebhookListenInput:
    forward_to: str = strawberry.field(description="The listener's local URL: shown only, never connected to")
    webhook_id: strawberry.ID | None = strawberry.field(default=None, description="Attach to this webhook")
    type: WebhookType | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="A temporary webhook of this type (deleted when the listener stops)"
    )
    query: str | None = None
    events: list[WebhookEventType] | None = None  # type: ignore[valid-type]
    name: str | None = None
    timeout_seconds: int | None = strawberry.field(
        default=None, description="A temporary webhook's timeout (1-30, default 15): the listener's local wait"
    )


@strawberry.type
class WebhookListenPayload:
    webhook: Webhook | None = None
    secret: str | None = strawberry.field(default=None, description="A temporary webhook's signing secret")
    listen_until: datetime | None = strawberry.field(default=None, description="When the hold lapses unless renewed")
    renew_every_seconds: float | None = strawberry.field(default=None, description="How often to renew it")
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookListenStopPayload:
    deleted: bool = strawberry.field(default=False, description="A temporary webhook was deleted")
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.input(description="What the listener's local target answered (or why it did not)")
class WebhookListenReportInput:
    event_id: strawberry.ID = strawberry.field(description="The delivery's `id` (a WebhookEvent ID)")
    duration_ms: int
    status_code: int | None = None
    response_headers: JSON | None = None
    response_body: str | None = strawberry.field(default=None, description="Kept: the first 4 KiB")
    error: str | None = strawberry.field(default=None, description="No answer: a timeout, a refused connection …")


@strawberry.type
class WebhookListenReportPayload:
    event: WebhookEvent | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type(description="One attempt for the listener to make: exactly the request a delivery sends")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="The WebhookEvent's ID: report the answer with it")
    event_id: str = strawberry.field(description="The delivery `id` (evt_…), sent as `webhook-id`")
    webhook_id: strawberry.ID
    event: str
    sequence: int
    attempt: int = strawberry.field(description="1 for the first try")
    method: str
    headers: list[WebhookHeader] = strawberry.field(description="Every header, signature included, in order")
    body: str = strawberry.field(description="The exact body (UTF-8) the signature covers")
    timeout_seconds: float


def _lease(ctx: Context) -> tuple[float, float]:
    lease_s = float(ctx.settings.listen_lease_s)
    return lease_s, lease_s / 3


async def _held_webhook(ctx: Context, global_id: str) -> Any:
    id_ = decode(global_id, "Webhook")
    if id_ is None:
        return None
    async with ctx.pool.acquire() as conn:
        return await webhook_store.get_webhook(conn, id_, ctx.viewer.seller_id)


async def _still_held(ctx: Context, webhook_id: int) -> bool:
    async with ctx.pool.acquire() as conn:
        row = await webhook_store.get_webhook(conn, webhook_id, None)
    return row is not None and listen_store.is_held(row, datetime.now(UTC))


def _forward_to_problem(url: str) -> str | None:
    target = parse_target(url)
    return target if isinstance(target, str) else None


@strawberry.type
class ListenMutation:
    @strawberry.mutation(description="Hold a webhook for `hookql listen` (attach, or create a temporary one)")
    async def webhook_listen(self, info: Info, input: WebhookListenInput) -> WebhookListenPayload:
        ctx = info.context
        hostile = text_problems(input)
        if hostile:
            return WebhookListenPayload(errors=hostile[:20])
        problem = _forward_to_problem(input.forward_to)  # before an attach too: it is shown
        if problem:
            return WebhookListenPayload(errors=[FieldError(field="forwardTo", message=problem)])
        lease_s, renew_s = _lease(ctx)
        if input.webhook_id is not None:
            if any(v is not None for v in (input.type, input.query, input.events, input.timeout_seconds)):
                message = "give webhookId to attach, or type/query/events/timeoutSeconds for a temporary webhook"
                return WebhookListenPayload(errors=[FieldError(field="webhookId", message=message)])
            hook = await _held_webhook(ctx, input.webhook_id)
            if hook is None:
                return WebhookListenPayload(errors=[FieldError(field="webhookId", message="webhook not found")])
            async with ctx.pool.acquire() as conn:
                until = await listen_store.hold_webhook(conn, hook["id"], lease_s, temporary=False)
                row = await webhook_store.get_webhook(conn, hook["id"], None)
            return WebhookListenPayload(webhook=Webhook.from_row(row), listen_until=until, renew_every_seconds=renew_s)
        if input.type is None:
            return WebhookListenPayload(errors=[FieldError(field="type", message="give type (or webhookId to attach)")])
        # A temporary webhook is validated as webhookCreate validates one, with its URL the
        # forwardTo URL, allowed to be private: the server never connects to it.
        create = WebhookCreateInput(
            name=input.name or f"hookql listen → {input.forward_to}"[:200],
            url=input.forward_to,
            type=input.type,
            query=input.query,
            events=input.events,
            timeout_seconds=input.timeout_seconds,
        )
        values, errors = await clean(
            info.schema, create, current=None, viewer=ctx.viewer, allow_private=True, settings=ctx.settings
        )
        if errors:
            return WebhookListenPayload(errors=[
                FieldError(field="forwardTo" if e.field == "url" else e.field, message=e.message) for e in errors
            ])
        async with ctx.pool.acquire() as conn, conn.transaction():
            seller = values.get("seller_id")
            problem = None if seller is None else await seller_problem(conn, seller, ctx.settings.seller_max_webhooks)
            if problem:
                return WebhookListenPayload(errors=[FieldError(field="type", message=problem)])
            secret = new_secret()
            row = await webhook_store.insert_webhook(conn, values, secret)
            until = await listen_store.hold_webhook(conn, row["id"], lease_s, temporary=True)
            row = await webhook_store.get_webhook(conn, row["id"], None)
        return WebhookListenPayload(
            webhook=Webhook.from_row(row), secret=secret, listen_until=until, renew_every_seconds=renew_s
        )

    @strawberry.mutation(description="Keep holding a webhook for `hookql listen`")
    async def webhook_listen_renew(self, info: Info, webhook_id: strawberry.ID) -> WebhookListenPayload:
        ctx = info.context
        hook = await _held_webhook(ctx, webhook_id)
        if hook is None:
            return WebhookListenPayload(errors=[FieldError(field="webhookId", message="webhook not found")])
        lease_s, renew_s = _lease(ctx)
        async with ctx.pool.acquire() as conn:
            until = await listen_store.renew_hold(conn, hook["id"], lease_s)
        if until is None:
            message = "the webhook is not held by `hookql listen` (its hold lapsed, or was never taken)"
            return WebhookListenPayload(errors=[FieldError(field="webhookId", message=message)])
        return WebhookListenPayload(listen_until=until, renew_every_seconds=renew_s)

    @strawberry.mutation(
        description="Stop listening: a temporary webhook is deleted, an attached one is delivered over HTTP again"
    )
    async def webhook_listen_stop(self, info: Info, webhook_id: strawberry.ID) -> WebhookListenStopPayload:
        ctx = info.context
        hook = await _held_webhook(ctx, webhook_id)
        if hook is None:
            return WebhookListenStopPayload(errors=[FieldError(field="webhookId", message="webhook not found")])
        async with ctx.pool.acquire() as conn:
            released = await listen_store.release_hold(conn, hook["id"])
        return WebhookListenStopPayload(deleted=released.deleted)

    @strawberry.mutation(description="Record the answer `hookql listen` got from its local target as the attempt")
    async def webhook_listen_report(self, info: Info, input: WebhookListenReportInput) -> WebhookListenReportPayload:
        ctx = info.context
        result, errors = _reported_result(input)
        if result is None:
            return WebhookListenReportPayload(errors=errors)
        event_pk = decode(input.event_id, "WebhookEvent")
        if event_pk is None:
            return WebhookListenReportPayload(errors=[FieldError(field="eventId", message="event not found")])
        try:
            await deliveries.record_report(ctx.pool, ctx.settings, event_pk, ctx.viewer.seller_id, result)
        except deliveries.NotAwaitingReport as exc:
            return WebhookListenReportPayload(errors=[FieldError(field="eventId", message=str(exc))])
        async with ctx.pool.acquire() as conn:
            row = await webhook_store.get_event(conn, event_pk, None)
        return WebhookListenReportPayload(event=WebhookEvent.from_row(row) if row else None)


def _reported_result(given: WebhookListenReportInput) -> tuple[SendResult | None, list[FieldError]]:
    """The reported answer as the transport's SendResult, cut to what an attempt keeps (the first
    4 KiB of the body, a bounded set of headers), or why it cannot be one."""
    errors = text_problems(given)
    if given.status_code is not None and not 100 <= given.status_code <= 599:
        errors.append(FieldError(field="statusCode", message="statusCode must be 100-599"))
    if given.status_code is None and not given.error:
        errors.append(FieldError(field="error", message="give statusCode, or error when there was no answer"))
    if not 0 <= given.duration_ms <= MAX_REPORTED_DURATION_MS:
        errors.append(FieldError(field="durationMs", message=f"durationMs must be 0-{MAX_REPORTED_DURATION_MS}"))
    headers: dict[str, str] = {}
    raw: object = given.response_headers if given.response_headers is not None else {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        errors.append(FieldError(field="responseHeaders", message="responseHeaders must be an object of strings"))
    else:
        size = 0
        for name, value in list(raw.items())[:MAX_REPORTED_HEADERS]:
            size += len(name) + len(value)
            if size > MAX_REPORTED_HEADER_BYTES or "\0" in name + value:
                break
            headers[name] = value
    if errors:
        return None, errors
    now = datetime.now(UTC)
    body = (given.response_body or "").encode("utf-8", "replace")[:RESPONSE_BODY_LIMIT].decode("utf-8", "ignore")
    retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return SendResult(
        started_at=now - timedelta(milliseconds=given.duration_ms),
        duration_ms=given.duration_ms,
        status_code=given.status_code,
        response_headers=headers,
        response_body=body,
        error=given.error[:MAX_REPORTED_ERROR_CHARS] if given.error else None,
        retry_after_s=parse_retry_after(retry_after, now),
    ), []


@strawberry.type
class ListenSubscription:
    @strawberry.subscription(
        description="The deliveries of a webhook held by `hookql listen` (webhookListen), as they fall due:"
        " make each request and report its answer with webhookListenReport"
    )
    async def webhook_listen_deliveries(
        self, info: Info, webhook_id: strawberry.ID
    ) -> AsyncGenerator[WebhookDelivery, None]:
        ctx: Context = info.context
        slots: KeySubscriptions | None = ctx.subscriptions
        if slots is None:
            raise ValueError("subscriptions are served over websockets only (graphql-transport-ws or graphql-ws)")
        with slots.hold():
            hook = await _held_webhook(ctx, webhook_id)
            if hook is None:
                raise ValueError("webhook not found")
            polls = 0
            while True:
                polls += 1
                if polls % HOLD_CHECK_EVERY == 0 and not await _still_held(ctx, hook["id"]):
                    # Its listener stopped (or another one released it): nothing more will come.
                    raise ValueError("the webhook is no longer held by `hookql listen`")
                try:
                    claimed = await deliveries.claim_deliveries(ctx.pool, ctx.settings, hook["id"])
                except db.DB_UNAVAILABLE as exc:  # a database restart: the events wait in the table
                    log.warning("listen: claiming for webhook %s failed (%s); retrying", hook["id"], exc)
                    claimed = []
                for d in claimed:
                    yield WebhookDelivery(
                        id=to_global_id("WebhookEvent", d.event_pk),
                        event_id=d.public_id,
                        webhook_id=to_global_id("Webhook", d.webhook_id),
                        event=d.event,
                        sequence=d.sequence,
                        attempt=d.attempt,
                        method=d.method,
                        headers=[WebhookHeader(name=k, value=v) for k, v in d.headers.items()],
                        body=d.body,
                        timeout_seconds=d.timeout_s,
                    )
                await asyncio.sleep(POLL_INTERVAL_S)
