"""A claimed event's attempt, both ways, for every sender of attempts — the dispatcher's HTTP
deliveries and `hookql listen`'s forwarded ones (app.api.listen_deliveries): the request to make
(`outgoing_for`) and what the answer does to the event (`plan_outcomes`: delivered, retried with
backoff and jitter, or failed, by app.policy.retry), as the rows `delivery.record_attempts` and
`record_webhook_health` take."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.config import Settings
from app.policy.attempt import build_attempt
from app.policy.envelope import PayloadJSON
from app.policy.retry import Outcome, classify, next_delay_ms, should_fail
from app.store.delivery import ClaimedEvent, EventOutcome, OutcomeCounts, attempt_values
from app.types import EntityType, Outgoing, SendResult

attempt_log = logging.getLogger("hookql.delivery")


def outgoing_for(row: ClaimedEvent, settings: Settings, now: datetime) -> Outgoing:
    """The attempt for a claimed event, with the webhook's configuration as it is now."""
    return build_attempt(
        row.webhook(),
        webhook_id=row.webhook_id,
        event_id=row.public_id,
        action=row.event.rsplit(".", 1)[-1],
        entity_type=EntityType(row.entity_type) if row.entity_type else None,
        entity_id=row.entity_id,
        sequence=row.sequence,
        changed_at=row.changed_at,
        payload=PayloadJSON(row.payload),  # the stored text, claimed as text
        now=now,
        allow_private_targets=settings.allow_private_targets,
    )


@dataclass
class PlannedOutcomes:
    """A batch of answers as `delivery.record_attempts` and `record_webhook_health` take them."""

    attempts: list[tuple[Any, ...]] = field(default_factory=list)  # webhook_attempts rows (attempt_values)
    events: list[EventOutcome] = field(default_factory=list)
    failed_pairs: list[tuple[int, str, int]] = field(default_factory=list)  # (webhook, type, id) never delivered
    per_hook: dict[int, OutcomeCounts] = field(default_factory=lambda: defaultdict(OutcomeCounts))
    retrying: bool = False  # a retry was scheduled


def plan_outcomes(
    batch: Sequence[tuple[ClaimedEvent, SendResult]], now: datetime, settings: Settings, rand: Callable[[], float]
) -> PlannedOutcomes:
    """Each answer's outcome (app.policy.retry), logged one line per attempt."""
    planned = PlannedOutcomes()
    for row, result in batch:
        outcome = classify(result)
        made = row.attempts + 1
        counters = planned.per_hook[row.webhook_id]
        next_at = now
        if outcome is Outcome.DELIVERED:
            status = "delivered"
            counters.delivered += 1
        elif outcome is Outcome.GONE:
            status = "failed"
            counters.gone += 1
        else:
            counters.failed += 1
            if outcome is Outcome.RATE_LIMITED:
                counters.rate_limited += 1
            if should_fail(made, row.max_attempts):
                status = "failed"
            else:
                status, planned.retrying = "pending", True
                delay_ms = next_delay_ms(result, made, settings.retry_base_ms, settings.retry_max_ms, rand)
                next_at = now + timedelta(milliseconds=delay_ms)
        if status == "failed" and row.entity_type is not None and row.entity_id is not None:
            planned.failed_pairs.append((row.webhook_id, row.entity_type, row.entity_id))
        planned.attempts.append(attempt_values(row.id, row.webhook_id, result))
        planned.events.append(EventOutcome(row.id, status, next_at))
        attempt_log.info(
            "attempt webhook=%s event=%s entity=%s:%s seq=%s try=%s status=%s duration_ms=%s outcome=%s "
            "next_in_s=%s error=%s",
            row.webhook_id,
            row.public_id,
            row.entity_type or "-",
            row.entity_id or "-",
            row.sequence,
            made,
            result.status_code or "-",
            result.duration_ms,
            status,
            f"{(next_at - now).total_seconds():.1f}" if status == "pending" else "-",
            repr(result.error) if result.error else "-",
        )
    return planned
