"""Prometheus metrics: the text exposition of one `app.store.metrics.Snapshot`, read from
PostgreSQL at scrape time (that module says where each figure comes from). Labels are bounded:
event statuses, five status classes, fixed buckets, two breach reasons, and webhook ids.

Webhook ids are bounded by a setting (`metrics_max_webhooks`, HOOKQL_METRICS_MAX_WEBHOOKS): that
many webhooks get series of their own, labelled `webhook="<GraphQL id>"` (the `webhook_id` of
their deliveries), chosen by largest backlog; everything else is reported under
`webhook="other"`, so each per-webhook family sums over `webhook` to its unlabelled total. A
webhook that enters or leaves the chosen set starts or ends its series, and "other" moves by its
counts; alert per webhook on backlog, or set the cap above the number of webhooks you run."""

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

from app.config import Settings
from app.policy import ids
from app.store.metrics import Snapshot, WebhookFigures, read_snapshot

SCRAPE_TIMEOUT_S = 5.0
OTHER_WEBHOOKS = "other"  # the `webhook` label of everything no listed webhook accounts for
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
    yield from webhook_families(snap)


def webhook_families(snap: Snapshot) -> Iterator[Metric]:
    """The per-webhook families: one series set per listed webhook, and the remainder of each
    total under webhook="other" (never negative)."""
    other = WebhookFigures(
        webhook_id=0,
        backlog=max(0, snap.backlog - sum(w.backlog for w in snap.webhooks)),
        attempts={c: _rest(snap.attempts_total.get(c, 0.0), [w.attempts.get(c, 0.0) for w in snap.webhooks])
                  for c in STATUS_CLASSES},
        latency_buckets={label: _rest(n, [w.latency_buckets.get(label, 0.0) for w in snap.webhooks])
                         for label, n in snap.latency_buckets.items()},
        latency_sum_s=_rest(snap.latency_sum_s, [w.latency_sum_s for w in snap.webhooks]),
    )
    labelled = [(ids.encode("Webhook", w.webhook_id), w) for w in snap.webhooks] + [(OTHER_WEBHOOKS, other)]
    backlog = GaugeMetricFamily(
        "hookql_webhook_backlog_events", "Pending events not yet delivered, by webhook", labels=["webhook"]
    )
    attempts = CounterMetricFamily(
        "hookql_webhook_attempts", "Delivery attempts by webhook and status class of the answer",
        labels=["webhook", "status_class"],
    )
    latency = HistogramMetricFamily(
        "hookql_webhook_delivery_latency_seconds",
        "From the commit of the latest coalesced change to the end of the 2xx attempt, by webhook",
        labels=["webhook"],
    )
    for label, figures in labelled:
        backlog.add_metric([label], figures.backlog)
        for status_class in STATUS_CLASSES:
            attempts.add_metric([label, status_class], figures.attempts.get(status_class, 0.0))
        latency.add_metric([label], _cumulative(figures.latency_buckets), figures.latency_sum_s)
    yield backlog
    yield attempts
    yield latency
    yield GaugeMetricFamily(
        "hookql_webhooks_aggregated",
        'Webhooks without series of their own, counted under webhook="other" (HOOKQL_METRICS_MAX_WEBHOOKS)',
        value=snap.webhooks_aggregated,
    )


def _rest(total: float, parts: list[float]) -> float:
    # Counters are sums of whole numbers (exact in float); the latency sum may round by a hair.
    return max(0.0, total - sum(parts))


def _latency_histogram(snap: Snapshot) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "hookql_delivery_latency_seconds",
        "From the commit of the latest coalesced change to the end of the 2xx attempt",
        buckets=_cumulative(snap.latency_buckets),
        sum_value=snap.latency_sum_s,
    )


def _cumulative(latency_buckets: dict[str, float]) -> list[tuple[str, float]]:
    """Non-cumulative counts by the database's bucket label → Prometheus' cumulative `le` buckets."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0.0
    for bound in (*LATENCY_BUCKETS_S, math.inf):
        label = "+Inf" if bound == math.inf else _db_label(bound)
        cumulative += latency_buckets.get(label, 0.0)
        buckets.append((_le(bound), cumulative))
    return buckets


def _db_label(bound: float) -> str:
    # numeric::text in PostgreSQL: 0.1 -> '0.1', 1 -> '1'
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterable[Metric]:
        return families(self._snap)


async def render_metrics(
    pool: asyncpg.Pool, *, max_webhooks: int = Settings.metrics_max_webhooks
) -> tuple[bytes, str]:
    """The Prometheus text exposition, with series of their own for at most `max_webhooks`
    webhooks, and its content type."""
    async with pool.acquire(timeout=SCRAPE_TIMEOUT_S) as conn:
        snap = await read_snapshot(conn, max_webhooks=max_webhooks)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry), CONTENT_TYPE_LATEST
