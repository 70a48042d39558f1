"""Evaluation budget breaches: the failed events a breach leaves, and each webhook's run of
consecutive breaches (disabled at HOOKQL_BUDGET_BREACHES_TO_DISABLE). The statement is in
`sql/budget_breaches.sql`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.store.queries import load

Q = load("budget_breaches")


@dataclass(frozen=True, slots=True)
class FailedEvaluation:
    """An event whose evaluation breached a budget: recorded FAILED with its error, never sent.
    `payload` is the JSON text the event log shows; `reason` the metric label (time, size)."""

    public_id: str
    webhook_id: int
    entity_type: str
    entity_id: int
    event: str
    sequence: int
    payload: str
    payload_hash: bytes
    changed_at: datetime
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class BudgetStreak:
    """A batch's effect on a webhook's consecutive budget breaches: `error` (the one to cite)
    when it breached, None when it only succeeded (the run of breaches ends)."""

    webhook_id: int
    error: str | None


async def record_budget_outcomes(
    conn: asyncpg.Connection, failed: list[FailedEvaluation], streaks: list[BudgetStreak], breaches_to_disable: int
) -> list[tuple[int, str]]:
    """Record a batch's budget breaches (call inside the enqueue transaction, after
    `lock_webhooks`): the FAILED events, the breach counter, and each webhook's run of
    consecutive breaches — extended by a breach, ended by a success; a webhook whose run reaches
    `breaches_to_disable` is disabled with the reason, as a 410 disables one. Returns the
    webhooks disabled by this call: (id, reason)."""
    rows = await conn.fetch(
        *Q.record_budget_outcomes(
            public_ids=[f.public_id for f in failed],
            webhook_ids=[f.webhook_id for f in failed],
            entity_types=[f.entity_type for f in failed],
            entity_ids=[f.entity_id for f in failed],
            events=[f.event for f in failed],
            sequences=[f.sequence for f in failed],
            payloads=[f.payload for f in failed],
            payload_hashes=[f.payload_hash for f in failed],
            changed_ats=[f.changed_at for f in failed],
            errors=[f.error for f in failed],
            reasons=[f.reason for f in failed],
            streak_webhook_ids=[s.webhook_id for s in streaks],
            streak_errors=[s.error for s in streaks],
            breaches_to_disable=breaches_to_disable,
        )
    )
    return [(r["id"], r["disabled_reason"]) for r in rows if r["disable"]]
