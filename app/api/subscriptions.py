"""`subscription { webhookEvents(webhookId: ID) { … } }`: each event of the key's webhooks (all, or
one) as it is recorded and after each attempt, over a websocket (graphql-transport-ws, or the older
graphql-ws). Fed through PostgreSQL (app.store.events_feed), so it shows what every engine process does,
workers included. A key holds at most `key_max_subscriptions` of them open in one process."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.api.ids import to_global_id
from app.policy.ids import decode
from app.store import webhooks as webhook_store
from app.store.events_feed import AttemptUpdate, EventUpdate, watch
from app.types import EntityType, EventStatus, Visibility

WebhookEventStatusEnum = strawberry.enum(EventStatus, name="WebhookEventStatus")


class SubscriptionQuotaReached(ValueError):
    """A key asked for one subscription more than it may hold open (an answer, not a fault)."""


class SubscriptionQuota:
    """Open subscriptions per API key in this process, across all its websocket connections.
    In-process by design: a subscription lives on one process's connection, and so does its
    slot. One event loop, so counting needs no lock."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[bytes] = Counter()

    def open_for(self, key_hash: bytes) -> int:
        return self._open[key_hash]

    @contextmanager
    def hold(self, key_hash: bytes) -> Iterator[None]:
        """A slot for the life of one subscription; SubscriptionQuotaReached when none is left.
        The slot is given back however the subscription ends: completed, stopped, failed, or its
        connection closed (the generator holding it is then closed or cancelled)."""
        if self._open[key_hash] >= self.per_key:
            raise SubscriptionQuotaReached(
                f"subscription quota reached: this API key has {self._open[key_hash]} subscriptions open and may"
                f" have at most {self.per_key} (HOOKQL_KEY_MAX_SUBSCRIPTIONS); end one to start another"
            )
        self._open[key_hash] += 1
        try:
            yield
        finally:
            self._open[key_hash] -= 1
            if not self._open[key_hash]:
                del self._open[key_hash]  # no entry is left behind for a key that holds nothing


@dataclass(frozen=True)
class KeySubscriptions:
    """One API key's share of a SubscriptionQuota: what a request's context carries."""

    quota: SubscriptionQuota
    key_hash: bytes  # as api_keys stores it (app.store.apikeys.hash_key)

    def hold(self) -> AbstractContextManager[None]:
        return self.quota.hold(self.key_hash)


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
    sequence: int | None = strawberry.field(
        description="Increases per webhook; null for an event its filter skipped (it takes no sequence number)"
    )
    skip_reason: str | None = strawberry.field(
        description="Why a SKIPPED event was not sent: `identical` (skipIdenticalPayloads) or `filtered`"
        " (the webhook's filter did not match)"
    )
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
            id=to_global_id("WebhookEvent", u.id),
            event_id=u.public_id,
            webhook_id=to_global_id("Webhook", u.webhook_id),
            event=u.event,
            status=EventStatus(u.status),
            sequence=u.sequence,
            skip_reason=u.skip_reason,
            entity_type=entity_name,
            entity_id=to_global_id(entity_name, u.entity_id) if entity_name and u.entity_id else None,
            payload=JSON(u.payload),
            attempts=u.attempts,
            created_at=u.created_at,
            changed_at=u.changed_at,
            next_attempt_at=u.next_attempt_at if u.status == EventStatus.PENDING.value else None,
            latest_attempt=WebhookStreamAttempt.from_update(u.latest_attempt) if u.latest_attempt else None,
        )


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
        visibility: Visibility = info.context.viewer
        slots: KeySubscriptions | None = info.context.subscriptions
        if slots is None:  # the view gives slots to each authenticated websocket
            raise ValueError("subscriptions are served over websockets only (graphql-transport-ws or graphql-ws)")
        with slots.hold():  # from the first update asked for until the stream is closed, however it ends
            only: int | None = None
            if webhook_id is not None:
                only = decode(str(webhook_id), "Webhook")
                # Another seller's webhook is as missing as one that never existed.
                if only is None or not await _visible(pool, only, visibility):
                    raise ValueError("webhook not found")
            async for update in watch(pool, visibility, only):
                yield WebhookEventUpdate.from_update(update)


async def _visible(pool: asyncpg.Pool, webhook_id: int, visibility: Visibility) -> bool:
    async with pool.acquire() as conn:
        return await webhook_store.get_webhook(conn, webhook_id, visibility.seller_id) is not None
