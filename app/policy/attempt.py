"""One attempt: the `Outgoing` the transport sends, built from a webhook's configuration and one
event. Pure. The one builder for every attempt: the dispatcher's deliveries of claimed events
and `webhookTest`'s ping."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.policy import ids
from app.policy.envelope import PayloadJSON, build_body
from app.policy.signing import DEFAULT_HMAC_HEADER
from app.types import EntityType, Format, Header, Method, Outgoing


def live_secrets(webhook: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    """The secrets that sign an attempt at `now`: the current one, and the previous one during
    its overlap."""
    expires = webhook["previous_secret_expires_at"]
    if webhook["previous_secret"] and expires is not None and expires > now:
        return (webhook["secret"], webhook["previous_secret"])
    return (webhook["secret"],)


def build_attempt(
    webhook: Mapping[str, Any],
    *,
    webhook_id: int,
    event_id: str,
    action: str,
    entity_type: EntityType | None,
    entity_id: int | None,
    sequence: int,
    changed_at: datetime,
    payload: dict[str, Any] | PayloadJSON,
    now: datetime,
    allow_private_targets: bool,
) -> Outgoing:
    """The attempt of event `event_id` (its body `id`, `webhook-id` and `Idempotency-Key`) with
    `webhook`'s configuration as it is at `now`: a mapping with the webhook's `url`, `method`,
    `format`, `headers`, `timeout_seconds` and secret columns, and `hmac_key`/`hmac_header` (a
    `webhooks` row, or a claimed event's row that carries them; a mapping without the HMAC
    columns sends no integrator HMAC). `entity_type` None is a ping."""
    entity_global_id = None
    if entity_type is not None and entity_id is not None:
        entity_global_id = ids.encode(entity_type.graphql_name, entity_id)
    body = build_body(
        event_id=event_id,
        action=action,
        webhook_global_id=ids.encode("Webhook", webhook_id),
        entity_type=entity_type,
        entity_global_id=entity_global_id,
        sequence=sequence,
        created_at=changed_at,
        payload=payload,
    )
    return Outgoing(
        url=webhook["url"],
        method=Method(webhook["method"]),
        format=Format(webhook["format"]),
        headers=tuple(Header(h["name"], h["value"]) for h in webhook["headers"]),
        secrets=live_secrets(webhook, now),
        message_id=event_id,
        sequence=sequence,
        body=body,
        timeout_s=float(webhook["timeout_seconds"]),
        allow_private_targets=allow_private_targets,
        hmac_key=webhook.get("hmac_key") or None,
        hmac_header=webhook.get("hmac_header") or DEFAULT_HMAC_HEADER,
    )
