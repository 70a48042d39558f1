"""Prometheus metrics: the text exposition of one `app.store.metrics.Snapshot`, read from
PostgreSQL at scrape time (that module says where each figure comes from). Labels are bounded:
event statuses, five status classes, fixed buckets and two breach reasons; never a webhook id."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from app.store.metrics import Snapshot, read_snapshot

SCRAPE_TIMEOUT_S = 5.0
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
BREACH_REASONS = ("time", "size")  # app.evaluation.execute.Breach.reason
# Must match hookql_latency_bucket() (migration 0011).
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400)


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
