"""`subscription { webhookEvents(webhookId: ID) { … } }`: each event of the key's webhooks (all, or
one) as it is recorded and after each attempt, over graphql-transport-ws. Fed through PostgreSQL
(app.events_feed), so it shows what every engine process does, workers included."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.events_feed import AttemptUpdate, EventUpdate, watch
from app.models import EntityType, EventStatus, Visibility

WebhookEventStatusEnum = strawberry.enum(EventStatus, name="WebhookEventStatus")


def _global_id(type_name: str, id_: int) -> strawberry.ID:
    return strawberry.ID(base64.b64encode(f"{type_name}:{id_}".encode()).decode())


def _parse_global_id(value: str, type_name: str) -> int | None:
    try:
        kind, _, raw = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(raw) if kind == type_name and raw.isdigit() else None


@strawberry.type(description="One try at delivering an event, as the stream reports it.")
class WebhookStreamAttempt:
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    response_headers: JSON
    response_body: str = strawberry.field(description="The first 4 KiB of the answer")
    error: str | None

    @classmethod
    def from_update(cls, a: AttemptUpdate) -> WebhookStreamAttempt:
        return cls(
            attempted_at=a.attempted_at,
            duration_ms=a.duration_ms,
            status_code=a.status_code,
            response_headers=JSON(a.response_headers),
            response_body=a.response_body,
            error=a.error,
        )


@strawberry.type(description="An event of one of your webhooks, as it is now.")
class WebhookEventUpdate:
    id: strawberry.ID = strawberry.field(description="The WebhookEvent's global ID (for `webhookEvent(id)`)")
    event_id: str = strawberry.field(description="The delivery `id` (evt_…): `webhook-id` on the wire")
    webhook_id: strawberry.ID
    event: str = strawberry.field(description="`invoice.updated`, `ping` …")
    status: EventStatus
    sequence: int
    entity_type: str | None = strawberry.field(description="`Invoice`, `Variant` or `RefundRequest`; none for a ping")
    entity_id: strawberry.ID | None = strawberry.field(description="The entity's global ID")
    payload: JSON = strawberry.field(description="The result of the webhook's query, as delivered")
    attempts: int
    created_at: datetime
    changed_at: datetime = strawberry.field(description="Commit time of the latest change it carries")
    next_attempt_at: datetime | None = strawberry.field(description="When a pending event is tried next")
    latest_attempt: WebhookStreamAttempt | None

    @classmethod
    def from_update(cls, u: EventUpdate) -> WebhookEventUpdate:
        entity_name = EntityType(u.entity_type).graphql_name if u.entity_type else None
        return cls(
            id=_global_id("WebhookEvent", u.id),
            event_id=u.public_id,
            webhook_id=_global_id("Webhook", u.webhook_id),
            event=u.event,
            status=EventStatus(u.status),
            sequence=u.sequence,
            entity_type=entity_name,
            entity_id=_global_id(entity_name, u.entity_id) if entity_name and u.entity_id else None,
            payload=JSON(u.payload),
            attempts=u.attempts,
            created_at=u.created_at,
            changed_at=u.changed_at,
            next_attempt_at=u.next_attempt_at if u.status == EventStatus.PENDING.value else None,
            latest_attempt=WebhookStreamAttempt.from_update(u.latest_attempt) if u.latest_attempt else None,
        )


_WEBHOOK_VISIBLE_SQL = "SELECT 1 FROM webhooks WHERE id = $1 AND ($2::bigint IS NULL OR seller_id = $2)"


@strawberry.type
class WebhookSubscription:
    @strawberry.subscription(
        description="Each event of your webhooks (or of one) when it is recorded and after every attempt."
        " Seller keys see their own webhooks only."
    )
    async def webhook_events(
        self, info: Info, webhook_id: strawberry.ID | None = None
    ) -> AsyncGenerator[WebhookEventUpdate, None]:
        pool = info.context.pool
        visibility: Visibility = info.context.visibility
        only: int | None = None
        if webhook_id is not None:
            only = _parse_global_id(str(webhook_id), "Webhook")
            # Another seller's webhook is as missing as one that never existed.
            if only is None or not await pool.fetchval(_WEBHOOK_VISIBLE_SQL, only, visibility.seller_id):
                raise ValueError("webhook not found")
        async for update in watch(pool, visibility, only):
            yield WebhookEventUpdate.from_update(update)
