"""What /metrics reports, read from PostgreSQL at scrape time (`app/store/sql/metrics.sql`).

Several `serve` and `worker` processes share one database and workers have no HTTP endpoint,
so nothing here is process memory: whichever process is scraped reports the same numbers.

- Gauges (backlog, retry queue, events by status, disabled webhooks …) count rows now.
- Counters must never go down, but events and attempts are pruned after the retention period,
  so counting rows would read as resets. They come from monotonic sources instead:
  * changes captured / events created: the `id` sequences of `changes` and `webhook_events`.
    A sequence also advances for rows of rolled-back transactions, so these may over-count by
    the (rare) aborted writes; in exchange they cost nothing on the capture path.
  * attempts by status class and the commit→2xx latency histogram: `hookql_metric_counters`,
    which a trigger on `webhook_attempts` (`hookql_count_attempts`, migrations 0007 and 0011)
    increments in the transaction that records each attempt, whichever process records it.
  * evaluation budget breaches by reason: `hookql_metric_counters` too, incremented by the
    statement that records the FAILED events (`app.store.budget_breaches.record_budget_outcomes`).
Each backend counts in rows of its own (no lock between recorders); a scrape first folds the
rows of backends that have ended into one row per metric and label.

Per-webhook series (migration 0020) come from the same trigger, into a table keyed by webhook,
for at most `max_webhooks` webhooks per scrape: those with the largest backlogs (then the most
attempts, then the oldest). The snapshot carries the totals beside them, so the web layer can
report the remainder under one aggregate label."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from app.store.queries import load
from app.types import EventStatus

Q = load("metrics")

# Serialises the folding of finished backends' counter rows between concurrent scrapes.
FOLD_LOCK_KEY = 0x686F6F6B6D74  # "hookmt"


@dataclass
class WebhookFigures:
    """One webhook's own series: its backlog now, and its cumulative delivery counters."""

    webhook_id: int
    backlog: int = 0
    attempts: dict[str, float] = field(default_factory=dict)  # by status class
    latency_buckets: dict[str, float] = field(default_factory=dict)  # non-cumulative, by bucket label
    latency_sum_s: float = 0.0


@dataclass
class Snapshot:
    """Everything one scrape reports, read in one transaction."""

    events_by_status: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    retry_queue: int = 0
    oldest_pending_age_s: float = 0.0
    changes_unprocessed: int = 0
    entities_pending: int = 0
    webhooks_enabled: int = 0
    webhooks_disabled: int = 0
    changes_captured_total: int = 0
    events_created_total: int = 0
    attempts_total: dict[str, float] = field(default_factory=dict)  # by status class
    latency_buckets: dict[str, float] = field(default_factory=dict)  # non-cumulative, by bucket label
    latency_sum_s: float = 0.0
    budget_breaches_total: dict[str, float] = field(default_factory=dict)  # by reason
    # At most max_webhooks webhooks, in selection order; the rest are only in the totals above.
    webhooks: list[WebhookFigures] = field(default_factory=list)
    webhooks_aggregated: int = 0  # webhooks that exist but have no series of their own


async def fold_finished_backends(conn: asyncpg.Connection) -> None:
    """Fold the counter rows of ended backends, unless another scrape is folding them now."""
    async with conn.transaction():
        if await conn.fetchval(*Q.try_fold_lock(key=FOLD_LOCK_KEY)):
            await conn.execute(*Q.fold_finished_backends())
            await conn.execute(*Q.fold_finished_webhook_backends())
            await conn.execute(*Q.forget_deleted_webhooks())


async def _sequence_value(conn: asyncpg.Connection, table: str) -> int:
    """How many ids the table's serial sequence has handed out (0 before the first)."""
    row = await conn.fetchrow(*Q.sequence_value(sequence=f"{table}_id_seq"))
    return int(row["n"]) if row else 0


async def read_snapshot(conn: asyncpg.Connection, *, max_webhooks: int = 0) -> Snapshot:
    """Fold, then read every figure in one repeatable-read transaction; per-webhook figures for
    at most `max_webhooks` webhooks."""
    snap = Snapshot(events_by_status={status.value: 0 for status in EventStatus})
    await fold_finished_backends(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for row in await conn.fetch(*Q.events_by_status()):
            snap.events_by_status[row["status"]] = row["n"]
        row = await conn.fetchrow(*Q.pending_events())
        snap.backlog, snap.retry_queue, snap.oldest_pending_age_s = (
            row["backlog"],
            row["retrying"],
            row["oldest_s"],
        )
        snap.changes_unprocessed = await conn.fetchval(*Q.changes_unprocessed())
        snap.entities_pending = await conn.fetchval(*Q.entities_pending())
        row = await conn.fetchrow(*Q.webhooks_by_state())
        snap.webhooks_enabled, snap.webhooks_disabled = row["enabled"], row["disabled"]
        snap.changes_captured_total = await _sequence_value(conn, "changes")
        snap.events_created_total = await _sequence_value(conn, "webhook_events")
        for row in await conn.fetch(*Q.counters()):
            if row["metric"] == "attempts":
                snap.attempts_total[row["label"]] = row["value"]
            elif row["metric"] == "latency_bucket":
                snap.latency_buckets[row["label"]] = row["value"]
            elif row["metric"] == "latency_sum":
                snap.latency_sum_s = row["value"]
            elif row["metric"] == "budget_breaches":
                snap.budget_breaches_total[row["label"]] = row["value"]
        if max_webhooks > 0:
            await _read_webhooks(conn, snap, max_webhooks)
        else:
            snap.webhooks_aggregated = snap.webhooks_enabled + snap.webhooks_disabled
    return snap


async def _read_webhooks(conn: asyncpg.Connection, snap: Snapshot, max_webhooks: int) -> None:
    selected = await conn.fetch(*Q.webhooks_with_series(max_webhooks=max_webhooks))
    figures = {r["webhook_id"]: WebhookFigures(r["webhook_id"], backlog=r["backlog"]) for r in selected}
    total = selected[0]["webhooks"] if selected else 0
    snap.webhooks = list(figures.values())
    snap.webhooks_aggregated = total - len(figures)
    for row in await conn.fetch(*Q.webhook_counters(webhook_ids=list(figures))):
        hook = figures[row["webhook_id"]]
        if row["metric"] == "attempts":
            hook.attempts[row["label"]] = row["value"]
        elif row["metric"] == "latency_bucket":
            hook.latency_buckets[row["label"]] = row["value"]
        elif row["metric"] == "latency_sum":
            hook.latency_sum_s = row["value"]
