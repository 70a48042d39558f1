"""Webhook queries and mutations. Expected failures come back as `errors { field message }`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.api.context import Context, Info, make_context
from app.api.ids import to_global_id
from app.api.webhook_inputs import WebhookCreateInput, WebhookUpdateInput, clean, text_problems
from app.api.webhook_replay import replay
from app.api.webhook_types import FieldError, Webhook, WebhookAttempt, WebhookEvent, WebhookType
from app.evaluation import sql as compiled_sql
from app.evaluation.compile import CompiledQuery, QueryError, compile_query
from app.evaluation.cost import limits_for
from app.evaluation.execute import evaluate
from app.evaluation.selection import compile_filter
from app.policy.attempt import build_attempt
from app.policy.envelope import build_body, new_event_id, payload_hash
from app.policy.filters import entity_root, matches
from app.policy.ids import decode
from app.policy.signing import new_secret
from app.store import listen as listen_store
from app.store import webhooks as webhook_store
from app.types import EntityType, Visibility

TEST_FAILED_REASON = "test failed"
TEST_RECORD_MARGIN_S = 5.0  # past the ping's own timeout: time to record the attempt and answer


async def seller_problem(conn: Any, seller_id: int, max_webhooks: int) -> str | None:
    """Why the seller cannot own one more webhook: missing, or at its quota. Holds the seller's
    row lock until the caller's transaction ends, so concurrent creates are counted one after the
    other. (Reported on `sellerId`, given by an operator key or implied by a seller key. The
    operator's own webhooks have no quota: operator keys are the marketplace's, not a tenant's.)"""
    count = await webhook_store.lock_seller_webhooks(conn, seller_id)
    if count is None:
        return f"seller {to_global_id('Seller', seller_id)} does not exist"
    if count >= max_webhooks:
        return (
            f"webhook quota reached: this seller has {count} webhooks and may have at most {max_webhooks}"
            " (HOOKQL_SELLER_MAX_WEBHOOKS); delete one to create another"
        )
    return None


def _not_found(field: str = "id") -> list[FieldError]:
    return [FieldError(field=field, message="webhook not found")]


async def _owned_webhook(ctx: Context, conn: Any, global_id: str) -> Any:
    id_ = decode(global_id, "Webhook")
    return await webhook_store.get_webhook(conn, id_, ctx.viewer.seller_id) if id_ is not None else None


@strawberry.type
class WebhookPayload:
    webhook: Webhook | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookSecretPayload:
    webhook: Webhook | None = None
    secret: str | None = strawberry.field(default=None, description="Shown here only: store it now")
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookTestPayload:
    event: WebhookEvent | None = None
    attempt: WebhookAttempt | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookPreviewPayload:
    body: JSON | None = strawberry.field(default=None, description="Exactly the JSON body a delivery would carry")
    filter_matches: bool | None = strawberry.field(
        default=None,
        description="Whether `filter` matches this payload (false: the event would be SKIPPED, `filtered`);"
        " null without a filter",
    )
    fallback_reason: str | None = strawberry.field(
        default=None,
        description="Why deliveries evaluate this query with graphql-core rather than as compiled SQL "
        "(the payload is the same either way); null when it compiles",
    )
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEventPayload:
    event: WebhookEvent | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookReplayPayload:
    queued: int = strawberry.field(default=0, description="Events enqueued: one per entity, at its current state")
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="Your webhooks (an operator key sees all)")
    async def webhooks(self, info: Info) -> list[Webhook]:
        async with info.context.pool.acquire() as conn:
            return [Webhook.from_row(r) for r in await webhook_store.list_webhooks(conn, info.context.viewer.seller_id)]

    @strawberry.field
    async def webhook(self, info: Info, id: strawberry.ID) -> Webhook | None:
        async with info.context.pool.acquire() as conn:
            row = await _owned_webhook(info.context, conn, id)
        return Webhook.from_row(row) if row else None

    @strawberry.field
    async def webhook_event(self, info: Info, id: strawberry.ID) -> WebhookEvent | None:
        id_ = decode(id, "WebhookEvent")
        if id_ is None:
            return None
        async with info.context.pool.acquire() as conn:
            row = await webhook_store.get_event(conn, id_, info.context.viewer.seller_id)
        return WebhookEvent.from_row(row) if row else None


@strawberry.type
class WebhookMutation:
    @strawberry.mutation
    async def webhook_create(self, info: Info, input: WebhookCreateInput) -> WebhookSecretPayload:
        return await create_webhook(info.schema, info.context, input)

    @strawberry.mutation(description="Change some fields; takes effect from the next attempt")
    async def webhook_update(self, info: Info, id: strawberry.ID, input: WebhookUpdateInput) -> WebhookPayload:
        return await update_webhook(info.schema, info.context, id, input)

    @strawberry.mutation
    async def webhook_delete(self, info: Info, id: strawberry.ID) -> WebhookDeletePayload:
        async with info.context.pool.acquire() as conn:
            current = await _owned_webhook(info.context, conn, id)
            if current is None:
                return WebhookDeletePayload(errors=_not_found())
            await webhook_store.delete_webhook(conn, current["id"])
        return WebhookDeletePayload(deleted_id=id)

    @strawberry.mutation(description="A new secret; the old one keeps signing beside it for 24 hours")
    async def webhook_rotate_secret(self, info: Info, id: strawberry.ID) -> WebhookSecretPayload:
        async with info.context.pool.acquire() as conn:
            current = await _owned_webhook(info.context, conn, id)
            if current is None:
                return WebhookSecretPayload(errors=_not_found())
            secret = new_secret()
            row = await webhook_store.rotate_secret(conn, current["id"], secret)
        return WebhookSecretPayload(webhook=Webhook.from_row(row), secret=secret)

    @strawberry.mutation(
        description="Send a signed `ping` now; a failed test disables the webhook. A webhook held by `hookql listen`"
        " gets it through its listener: the event is returned pending, without an attempt"
    )
    async def webhook_test(self, info: Info, id: strawberry.ID) -> WebhookTestPayload:
        ctx = info.context
        async with ctx.pool.acquire() as conn:
            hook = await _owned_webhook(ctx, conn, id)
            if hook is None:
                return WebhookTestPayload(errors=_not_found())
            sequence = await webhook_store.next_sequences(conn, hook["id"])
            if listen_store.is_held(hook, datetime.now(UTC)):
                # Its deliveries go to `hookql listen`: so does the ping, as a pending event that
                # its listener forwards and reports (no attempt yet to return).
                event_pk = await listen_store.enqueue_ping(
                    conn, public_id=new_event_id(), webhook_id=hook["id"], sequence=sequence, payload={},
                    payload_hash=payload_hash({}),
                )
                event = await webhook_store.get_event(conn, event_pk, None)
                return WebhookTestPayload(event=WebhookEvent.from_row(event))
        now = datetime.now(UTC)
        event_id = new_event_id()
        out = build_attempt(
            hook,
            webhook_id=hook["id"],
            event_id=event_id,
            action="ping",
            entity_type=None,
            entity_id=None,
            sequence=sequence,
            changed_at=now,
            payload={},
            now=now,
            allow_private_targets=ctx.settings.allow_private_targets,
        )
        # The ping may wait its whole timeout for the receiver, which can be longer than the
        # request's deadline (request_timeout_ms): the deadline makes room for it, so a slow but
        # answering receiver's test is recorded and answered rather than cut off.
        if ctx.deadline is not None:
            ctx.deadline.extend_to(asyncio.get_running_loop().time() + out.timeout_s + TEST_RECORD_MARGIN_S)
        result = await ctx.transport.send(out)
        async with ctx.pool.acquire() as conn, conn.transaction():
            if not await webhook_store.lock_webhook(conn, hook["id"]):  # deleted while the ping was in flight
                return WebhookTestPayload(errors=_not_found())
            event_pk = await webhook_store.insert_finished_event(
                conn,
                public_id=event_id,
                webhook_id=hook["id"],
                event="ping",
                sequence=sequence,
                status="delivered" if result.ok else "failed",
                payload={},
                payload_hash=payload_hash({}),
                changed_at=now,
                attempts=1,
            )
            attempt_pk = await webhook_store.record_attempt(conn, event_pk, hook["id"], result)
            if not result.ok:
                await webhook_store.disable_webhook(conn, hook["id"], TEST_FAILED_REASON)
            event = await webhook_store.get_event(conn, event_pk, None)
            attempt = next(a for a in await webhook_store.attempts_for(conn, [event_pk]) if a["id"] == attempt_pk)
        return WebhookTestPayload(event=WebhookEvent.from_row(event), attempt=WebhookAttempt.from_row(attempt))

    @strawberry.mutation(description="The exact body a delivery for this entity would carry now; sends nothing")
    async def webhook_preview(
        self,
        info: Info,
        type: WebhookType,
        query: str,  # type: ignore[valid-type]
        entity_id: strawberry.ID,
        filter: str | None = None,
    ) -> WebhookPreviewPayload:
        return await preview(info.schema, info.context, EntityType(type), query, str(entity_id), filter)

    @strawberry.mutation(description="Send a failed or cancelled event again (refused if a newer one exists)")
    async def webhook_event_retry(self, info: Info, id: strawberry.ID) -> WebhookEventPayload:
        return await _event_action(info, id, webhook_store.retry_event)

    @strawberry.mutation(description="Stop a pending event")
    async def webhook_event_cancel(self, info: Info, id: strawberry.ID) -> WebhookEventPayload:
        return await _event_action(info, id, webhook_store.cancel_event)

    @strawberry.mutation(
        description="Send a pending event now, cutting its retry backoff short (refused while it is being sent)"
    )
    async def webhook_event_send_now(self, info: Info, id: strawberry.ID) -> WebhookEventPayload:
        return await _event_action(info, id, webhook_store.send_now)

    @strawberry.mutation(
        description="Deliver a delivered event again: returns a new event with the same payload, due now"
        " (refused if a newer event for its entity exists)"
    )
    async def webhook_event_resend(self, info: Info, id: strawberry.ID) -> WebhookEventPayload:
        return await _event_action(info, id, resend)

    @strawberry.mutation(
        description="Re-deliver to this webhook only, at their current state, the entities it had events for "
        "since `since`: one new event each, due now"
    )
    async def webhook_replay(self, info: Info, webhook_id: strawberry.ID, since: datetime) -> WebhookReplayPayload:
        async with info.context.pool.acquire() as conn:
            hook = await _owned_webhook(info.context, conn, webhook_id)
        if hook is None:
            return WebhookReplayPayload(errors=_not_found("webhookId"))
        queued = await replay(info.schema, info.context, hook, since)
        if isinstance(queued, str):
            return WebhookReplayPayload(errors=[FieldError(field="webhookId", message=queued)])
        return WebhookReplayPayload(queued=queued)


async def resend(conn: Any, event_id: int) -> tuple[str | None, int]:
    """webhookEventResend's action (the dashboard's "Resend" too): the problem, or None and the
    new event's id."""
    public_id = new_event_id()
    problem = await webhook_store.resend_event(conn, event_id, public_id)
    if problem:
        return problem, event_id
    return None, await webhook_store.event_id_by_public_id(conn, public_id) or event_id


async def event_action(conn: Any, viewer: Visibility, event_id: int, action: Any) -> tuple[str | None, int | None]:
    """Run an event action on an event `viewer` may see, inside the caller's transaction: one of
    `webhook_store.retry_event`, `cancel_event` and `send_now`, which return their problem or
    None, or `resend`, which also returns the event it made. Returns (problem, the event to show
    after it: the new one for a resend); ("event not found", None) for another owner's event.
    The API's mutations and the dashboard's buttons both act through here."""
    event = await webhook_store.get_event(conn, event_id, viewer.seller_id)
    if event is None:
        return "event not found", None
    done = await action(conn, event["id"])
    problem, shown = done if isinstance(done, tuple) else (done, event["id"])
    return problem, shown


async def _event_action(info: Info, id: strawberry.ID, action: Any) -> WebhookEventPayload:
    id_ = decode(id, "WebhookEvent")
    async with info.context.pool.acquire() as conn, conn.transaction():
        problem, shown = (
            await event_action(conn, info.context.viewer, id_, action) if id_ is not None else ("event not found", None)
        )
        if problem or shown is None:
            return WebhookEventPayload(errors=[FieldError(field="id", message=problem or "event not found")])
        event = await webhook_store.get_event(conn, shown, None)
    return WebhookEventPayload(event=WebhookEvent.from_row(event))


# The mutations' bodies, as functions of (schema, context, input): the dashboard's forms call
# these too, so a webhook created, edited or previewed there is validated and stored exactly as
# through the API.


async def create_webhook(schema: Any, ctx: Context, input: WebhookCreateInput) -> WebhookSecretPayload:
    """webhookCreate: `clean` validates every field, the seller's quota is checked under its lock."""
    values, errors = await clean(
        schema,
        input,
        current=None,
        viewer=ctx.viewer,
        allow_private=ctx.settings.allow_private_targets,
        settings=ctx.settings,
    )
    if errors:
        return WebhookSecretPayload(errors=errors)
    async with ctx.pool.acquire() as conn, conn.transaction():
        seller, problem = values.get("seller_id"), None
        if seller is not None:
            problem = await seller_problem(conn, seller, ctx.settings.seller_max_webhooks)
        if problem:
            return WebhookSecretPayload(errors=[FieldError(field="sellerId", message=problem)])
        secret = new_secret()
        row = await webhook_store.insert_webhook(conn, values, secret)
    return WebhookSecretPayload(webhook=Webhook.from_row(row), secret=secret)


async def update_webhook(schema: Any, ctx: Context, id: str, input: WebhookUpdateInput) -> WebhookPayload:
    """webhookUpdate of the webhook with global ID `id`, if the caller may see it."""
    async with ctx.pool.acquire() as conn:
        current = await _owned_webhook(ctx, conn, id)
        if current is None:
            return WebhookPayload(errors=_not_found())
        values, errors = await clean(
            schema,
            input,
            current=dict(current),
            viewer=ctx.viewer,
            allow_private=ctx.settings.allow_private_targets,
            settings=ctx.settings,
        )
        if errors:
            return WebhookPayload(errors=errors)
        row = await webhook_store.update_webhook(conn, current["id"], values)
    return WebhookPayload(webhook=Webhook.from_row(row))


async def preview(
    schema: Any, ctx: Context, entity_type: EntityType, query: str, entity_id: str, filter: str | None = None
) -> WebhookPreviewPayload:
    """webhookPreview: the body a delivery of `query` for the entity would carry, with the
    caller's visibility and limits, and whether `filter` lets it through."""
    # as webhookCreate refuses them: NUL, lone surrogates, size
    hostile = text_problems(query, "query") + text_problems(filter, "filter")
    if hostile:
        return WebhookPreviewPayload(errors=hostile)
    limits = limits_for(ctx.settings, operator=ctx.viewer.is_operator)  # it runs with the caller's visibility
    compiled = compile_query(schema, query, entity_type, limits=limits, remember=False)  # a one-off
    if isinstance(compiled, QueryError):
        return WebhookPreviewPayload(errors=[FieldError(field="query", message=compiled.message)])
    condition = compile_filter(filter, compiled) if filter and filter.strip() else None
    if isinstance(condition, str):
        return WebhookPreviewPayload(errors=[FieldError(field="filter", message=condition)])
    if decode(entity_id, entity_type.graphql_name) is None:
        return WebhookPreviewPayload(
            errors=[FieldError(field="entityId", message=f"entityId is not a {entity_type.graphql_name} ID")]
        )
    # The same code path as a delivery: a fresh context with the caller's visibility (and the
    # request's deadline, which the executor checks, and its share of the pool).
    context = make_context(ctx.pool, ctx.viewer, ctx.settings, max_statements=ctx.loaders.max_statements)
    context.deadline = ctx.deadline
    [payload] = await evaluate(schema, context, compiled, [entity_id])
    body = build_body(
        event_id=new_event_id(),
        action="updated",
        webhook_global_id="",
        entity_type=entity_type,
        entity_global_id=entity_id,
        sequence=0,
        created_at=datetime.now(UTC),
        payload=payload,
    )
    if condition is None:
        return WebhookPreviewPayload(body=body, fallback_reason=_fallback_reason(schema, ctx, compiled))
    root = entity_root(entity_type.graphql_name)
    return WebhookPreviewPayload(
        body=body,
        filter_matches=matches(condition, payload, root),
        fallback_reason=_fallback_reason(schema, ctx, compiled),
    )


def _fallback_reason(schema: Any, ctx: Context, compiled: CompiledQuery) -> str | None:
    if not ctx.settings.compiled_queries:
        return "HOOKQL_COMPILED_QUERIES is off"
    return compiled_sql.fallback_reason(schema, compiled)
