"""GraphQL types of webhooks and their event log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import strawberry
from strawberry.scalars import JSON

from app.api.context import Info
from app.api.ids import to_global_id
from app.api.pagination import Connection, Edge, PageInfo, check_first, decode_cursor, encode_cursor
from app.api.subscriptions import WebhookEventStatusEnum
from app.store import listen as listen_store
from app.store import webhooks as webhook_store
from app.store.dashboard import WebhookHealth
from app.types import Action, EntityType, EventStatus, Format, Method

WebhookType = strawberry.enum(EntityType, name="WebhookType", description="The entity a webhook watches")
WebhookEventType = strawberry.enum(Action, name="WebhookEventType")
HttpMethod = strawberry.enum(Method, name="HttpMethod")
PayloadFormat = strawberry.enum(Format, name="PayloadFormat")


@strawberry.type
class FieldError:
    field: str
    message: str


@strawberry.type
class WebhookHeader:
    name: str
    value: str


@strawberry.type
class WebhookAttempt:
    id: strawberry.ID
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    response_headers: JSON
    response_body: str = strawberry.field(description="The first 4 KiB of the receiver's answer")
    error: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WebhookAttempt:
        return cls(
            id=to_global_id("WebhookAttempt", row["id"]),
            attempted_at=row["attempted_at"],
            duration_ms=row["duration_ms"],
            status_code=row["status_code"],
            response_headers=row["response_headers"],
            response_body=row["response_body"],
            error=row["error"],
        )


@strawberry.type
class WebhookEvent:
    id: strawberry.ID
    event_id: str = strawberry.field(description="The delivery `id` (evt_…), sent as `webhook-id`")
    event: str
    status: WebhookEventStatusEnum  # type: ignore[valid-type]
    sequence: int | None = strawberry.field(
        description="Increases per webhook; null for an event its filter skipped (it takes no sequence number)"
    )
    skip_reason: str | None = strawberry.field(
        description="Why a SKIPPED event was not sent: `identical` (skipIdenticalPayloads) or `filtered`"
        " (the webhook's filter did not match)"
    )
    entity_type: str | None
    entity_id: strawberry.ID | None
    payload: JSON
    attempt_count: int
    next_attempt_at: datetime | None
    changed_at: datetime
    created_at: datetime
    finished_at: datetime | None
    error: str | None = strawberry.field(
        description="Why the event was never sent: its evaluation breached a budget (time, or payload size)."
        " Null otherwise; delivery errors are on its attempts"
    )
    db_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WebhookEvent:
        name = EntityType(row["entity_type"]).graphql_name if row["entity_type"] else None
        return cls(
            id=to_global_id("WebhookEvent", row["id"]),
            event_id=row["public_id"],
            event=row["event"],
            status=EventStatus(row["status"]),
            sequence=row["sequence"],
            skip_reason=row["skip_reason"],
            entity_type=name,
            entity_id=to_global_id(name, row["entity_id"]) if name else None,
            payload=row["payload"],
            attempt_count=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
            changed_at=row["changed_at"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            error=row["error"],
            db_id=row["id"],
        )

    @strawberry.field(description="Every attempt, oldest first")
    async def attempts(self, info: Info) -> list[WebhookAttempt]:
        async with info.context.pool.acquire() as conn:
            return [WebhookAttempt.from_row(r) for r in await webhook_store.attempts_for(conn, [self.db_id])]


@strawberry.type
class Webhook:
    id: strawberry.ID
    legacy_id: int
    name: str
    url: str
    type: WebhookType  # type: ignore[valid-type]
    query: str
    subscribed_events: list[WebhookEventType] = strawberry.field(  # type: ignore[valid-type]
        description="The actions this webhook fires for (the `events` input)"
    )
    method: HttpMethod  # type: ignore[valid-type]
    format: PayloadFormat  # type: ignore[valid-type]
    headers: list[WebhookHeader]
    enabled: bool
    disabled_reason: str | None
    skip_identical_payloads: bool
    max_attempts: int
    timeout_seconds: int
    concurrency: int
    seller_id: strawberry.ID | None
    hmac_header: str = strawberry.field(description="The header that carries the hmacKey signature")
    hmac_key_set: bool = strawberry.field(
        description="Whether an hmacKey is set (deliveries and pings then carry `hmacHeader`); the key is write-only"
    )
    filter: str | None = strawberry.field(
        description="The delivery filter: a payload it does not match is SKIPPED with skipReason `filtered`"
    )
    created_at: datetime
    updated_at: datetime
    listening: bool = strawberry.field(
        description="Held by `hookql listen`: its deliveries go to the listener (which forwards them), not over HTTP"
    )
    temporary: bool = strawberry.field(
        description="Created by `hookql listen` for itself: deleted when the listener stops"
    )

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Webhook:
        return cls(
            id=to_global_id("Webhook", row["id"]),
            legacy_id=row["id"],
            name=row["name"],
            url=row["url"],
            type=EntityType(row["entity_type"]),
            query=row["query"],
            subscribed_events=[Action(e) for e in row["events"]],
            method=Method(row["method"]),
            format=Format(row["format"]),
            headers=[WebhookHeader(name=h["name"], value=h["value"]) for h in row["headers"]],
            enabled=row["enabled"],
            disabled_reason=row["disabled_reason"],
            skip_identical_payloads=row["skip_identical_payloads"],
            max_attempts=row["max_attempts"],
            timeout_seconds=row["timeout_seconds"],
            concurrency=row["concurrency"],
            seller_id=to_global_id("Seller", row["seller_id"]) if row["seller_id"] else None,
            hmac_header=row["hmac_header"],
            hmac_key_set=row["hmac_key"] is not None,
            filter=row["filter"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            listening=listen_store.is_held(row, datetime.now(UTC)),
            temporary=row["listen_only"],
        )

    async def _health(self, info: Info) -> WebhookHealth | None:
        return await info.context.loaders.webhook_health.load(self.legacy_id)

    @strawberry.field(description="When its latest attempt was made; null before the first")
    async def last_attempt_at(self, info: Info) -> datetime | None:
        health = await self._health(info)
        return health.last_attempt_at if health else None

    @strawberry.field(
        description="The status code of its latest attempt; null before the first, or when it got no answer"
    )
    async def last_status_code(self, info: Info) -> int | None:
        health = await self._health(info)
        return health.last_status_code if health else None

    @strawberry.field(description="The share (0-1) of the last 24 hours' attempts answered 2xx; null without attempts")
    async def success_rate_24h(self, info: Info) -> float | None:
        health = await self._health(info)
        return health.success_rate_24h if health else None

    @strawberry.field(description="Events waiting to be delivered (pending)")
    async def backlog(self, info: Info) -> int:
        health = await self._health(info)
        return health.backlog if health else 0

    @strawberry.field(description="This webhook's events, newest first")
    async def events(
        self,
        info: Info,
        status: WebhookEventStatusEnum | None = None,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
        retrying: Annotated[
            bool | None,
            strawberry.argument(
                description="true: only the events waiting for a retry (PENDING after at least one "
                "failed attempt); false: every event but those"
            ),
        ] = None,
    ) -> Connection[WebhookEvent]:
        limit = check_first(first)
        before = decode_cursor(after) if after else None
        async with info.context.pool.acquire() as conn:
            rows = await webhook_store.list_events(
                conn, self.legacy_id, status.value if status else None, before, limit + 1, retrying=retrying
            )
        edges = [Edge(cursor=encode_cursor(r["id"]), node=WebhookEvent.from_row(r)) for r in rows[:limit]]
        return Connection(
            edges=edges,
            page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None),
        )
