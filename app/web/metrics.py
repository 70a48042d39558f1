"""Prometheus metrics, read from PostgreSQL at scrape time.

Several `serve` and `worker` processes share one database and workers have no HTTP endpoint,
so nothing here is process memory: whichever process is scraped reports the same numbers.

- Gauges (backlog, retry queue, events by status, disabled webhooks …) count rows now.
- Counters must never go down, but events and attempts are pruned after the retention period,
  so counting rows would read as resets. They come from monotonic sources instead:
  * changes captured / events created: the `id` sequences of `changes` and `webhook_events`.
    A sequence also advances for rows of rolled-back transactions, so these may over-count by
    the (rare) aborted writes; in exchange they cost nothing on the capture path.
  * attempts by status class and the commit→2xx latency histogram: `hookql_metric_counters`,
    which a trigger on `webhook_attempts` (migration 0007) increments in the transaction that
    records each attempt, whichever process records it.
  * evaluation budget breaches by reason: `hookql_metric_counters` too, incremented by the
    statement that records the FAILED events (`store.pipeline.record_budget_outcomes`).
Labels are bounded: event statuses, five status classes, fixed buckets and two breach reasons;
never a webhook id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from app.types import EventStatus

SCRAPE_TIMEOUT_S = 5.0
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
BREACH_REASONS = ("time", "size")  # app.evaluation.execute.Breach.reason
# Must match hookql_latency_bucket() in migration 0007.
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400)
# Serialises the folding of finished backends' counter rows between concurrent scrapes.
FOLD_LOCK_KEY = 0x686F6F6B6D74  # "hookmt"


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
    attempts_total: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[str, float] = field(default_factory=dict)  # non-cumulative, by le label
    latency_sum_s: float = 0.0
    budget_breaches_total: dict[str, float] = field(default_factory=dict)  # by reason


_FOLD_FINISHED_BACKENDS = """
WITH gone AS (
    SELECT metric, label, backend_pid FROM hookql_metric_counters c
    WHERE backend_pid <> 0
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.backend_pid)
    FOR UPDATE SKIP LOCKED
), folded AS (
    DELETE FROM hookql_metric_counters c USING gone g
    WHERE c.metric = g.metric AND c.label = g.label AND c.backend_pid = g.backend_pid
    RETURNING c.metric, c.label, c.value
)
INSERT INTO hookql_metric_counters AS c (metric, label, backend_pid, value)
SELECT metric, label, 0, sum(value) FROM folded GROUP BY metric, label
ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value
"""


async def _sequence_value(conn: asyncpg.Connection, table: str) -> int:
    """How many ids the table's serial sequence has handed out (0 before the first)."""
    # last_value is NULL until the first nextval().
    row = await conn.fetchrow(
        "SELECT COALESCE(last_value, 0) AS n FROM pg_sequences"
        " WHERE schemaname = current_schema() AND sequencename = $1",
        f"{table}_id_seq",
    )
    return int(row["n"]) if row else 0


async def read_snapshot(conn: asyncpg.Connection) -> Snapshot:
    snap = Snapshot(events_by_status={status.value: 0 for status in EventStatus})
    # Folding is housekeeping; only one scraper needs to do it at a time.
    async with conn.transaction():
        if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FOLD_LOCK_KEY):
            await conn.execute(_FOLD_FINISHED_BACKENDS)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for row in await conn.fetch("SELECT status, count(*) AS n FROM webhook_events GROUP BY status"):
            snap.events_by_status[row["status"]] = row["n"]
        row = await conn.fetchrow(
            "SELECT count(*) AS backlog, count(*) FILTER (WHERE attempts > 0) AS retrying,"
            " COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s"
            " FROM webhook_events WHERE status = 'pending'"
        )
        snap.backlog, snap.retry_queue, snap.oldest_pending_age_s = (
            row["backlog"],
            row["retrying"],
            row["oldest_s"],
        )
        snap.changes_unprocessed = await conn.fetchval("SELECT count(*) FROM changes")
        snap.entities_pending = await conn.fetchval("SELECT count(*) FROM pending_entities")
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE enabled) AS enabled,"
            " count(*) FILTER (WHERE NOT enabled) AS disabled FROM webhooks"
        )
        snap.webhooks_enabled, snap.webhooks_disabled = row["enabled"], row["disabled"]
        snap.changes_captured_total = await _sequence_value(conn, "changes")
        snap.events_created_total = await _sequence_value(conn, "webhook_events")
        for row in await conn.fetch(
            "SELECT metric, label, sum(value) AS value FROM hookql_metric_counters GROUP BY metric, label"
        ):
            if row["metric"] == "attempts":
                snap.attempts_total[row["label"]] = row["value"]
            elif row["metric"] == "latency_bucket":
                snap.latency_buckets[row["label"]] = row["value"]
            elif row["metric"] == "latency_sum":
                snap.latency_sum_s = row["value"]
            elif row["metric"] == "budget_breaches":
                snap.budget_breaches_total[row["label"]] = row["value"]
    return snap


def _le(bound: float) -> str:
    # Prometheus' own spelling of bucket bounds: 5 -> "5.0", 0.25 -> "0.25", inf -> "+Inf"
    return "+Inf" if bound == math.inf else repr(float(bound))


def families(snap: Snapshot) -> Iterator[Metric]:
    """The Prometheus metric families of one snapshot."""
    events = GaugeMetricFamily(
        "hookql_events", "Webhook events by status (delivered and skipped ones are pruned)", labels=["status"]
    )
    for status, n in sorted(snap.events_by_status.items()):
        events.add_metric([status], n)
    yield events
    yield GaugeMetricFamily("hookql_backlog_events", "Pending events not yet delivered", value=snap.backlog)
    yield GaugeMetricFamily(
        "hookql_retry_queue_events", "Pending events that failed at least once", value=snap.retry_queue
    )
    yield GaugeMetricFamily(
        "hookql_oldest_pending_event_age_seconds",
        "Age of the oldest pending event",
        value=snap.oldest_pending_age_s,
    )
    yield GaugeMetricFamily(
        "hookql_changes_unprocessed", "Captured changes not yet folded", value=snap.changes_unprocessed
    )
    yield GaugeMetricFamily(
        "hookql_entities_pending", "Entities waiting for their debounce window", value=snap.entities_pending
    )
    webhooks = GaugeMetricFamily("hookql_webhooks", "Registered webhooks by state", labels=["state"])
    webhooks.add_metric(["enabled"], snap.webhooks_enabled)
    webhooks.add_metric(["disabled"], snap.webhooks_disabled)
    yield webhooks
    yield GaugeMetricFamily("hookql_webhooks_disabled", "Disabled webhooks", value=snap.webhooks_disabled)
    yield CounterMetricFamily("hookql_changes_captured", "Entity changes captured", value=snap.changes_captured_total)
    yield CounterMetricFamily("hookql_events_created", "Webhook events created", value=snap.events_created_total)
    attempts = CounterMetricFamily(
        "hookql_attempts", "Delivery attempts by status class of the answer", labels=["status_class"]
    )
    for status_class in STATUS_CLASSES:
        attempts.add_metric([status_class], snap.attempts_total.get(status_class, 0.0))
    yield attempts
    yield _latency_histogram(snap)
    breaches = CounterMetricFamily(
        "hookql_evaluation_budget_breaches",
        "Webhook events failed because their evaluation breached a budget, by reason (time, size)",
        labels=["reason"],
    )
    for reason in BREACH_REASONS:
        breaches.add_metric([reason], snap.budget_breaches_total.get(reason, 0.0))
    yield breaches


def _latency_histogram(snap: Snapshot) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0.0
    for bound in (*LATENCY_BUCKETS_S, math.inf):
        label = "+Inf" if bound == math.inf else _db_label(bound)
        cumulative += snap.latency_buckets.get(label, 0.0)
        buckets.append((_le(bound), cumulative))
    return HistogramMetricFamily(
        "hookql_delivery_latency_seconds",
        "From the commit of the latest coalesced change to the end of the 2xx attempt",
        buckets=buckets,
        sum_value=snap.latency_sum_s,
    )


def _db_label(bound: float) -> str:
    # numeric::text in PostgreSQL: 0.1 -> '0.1', 1 -> '1'
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterable[Metric]:
        return families(self._snap)


async def render_metrics(pool: asyncpg.Pool) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    async with pool.acquire(timeout=SCRAPE_TIMEOUT_S) as conn:
        snap = await read_snapshot(conn)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry), CONTENT_TYPE_LATEST
