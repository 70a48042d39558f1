"""Prometheus metrics. Gauges are read from PostgreSQL at scrape time, so every `serve` and
`worker` process sharing a database reports the same truth, whichever one is scraped."""

from __future__ import annotations

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

SCRAPE_TIMEOUT_S = 5.0


async def render_metrics(pool: asyncpg.Pool) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    events = Gauge(
        "hookql_events", "Webhook events by status (within retention)", ["status"], registry=registry
    )
    backlog = Gauge("hookql_backlog_events", "Pending events not yet delivered", registry=registry)
    retry = Gauge(
        "hookql_retry_queue_events", "Pending events that have failed at least once", registry=registry
    )
    changes = Gauge("hookql_changes_unprocessed", "Captured changes not yet folded", registry=registry)
    pending = Gauge(
        "hookql_entities_pending", "Entities waiting for their debounce window", registry=registry
    )
    disabled = Gauge("hookql_webhooks_disabled", "Disabled webhooks", registry=registry)
    async with pool.acquire(timeout=SCRAPE_TIMEOUT_S) as conn:
        for row in await conn.fetch("SELECT status, count(*) AS n FROM webhook_events GROUP BY status"):
            events.labels(row["status"]).set(row["n"])
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS backlog,"
            " count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying"
            " FROM webhook_events WHERE status = 'pending'"
        )
        backlog.set(row["backlog"])
        retry.set(row["retrying"])
        changes.set(await conn.fetchval("SELECT count(*) FROM changes"))
        pending.set(await conn.fetchval("SELECT count(*) FROM pending_entities"))
        disabled.set(await conn.fetchval("SELECT count(*) FROM webhooks WHERE NOT enabled"))
    return generate_latest(registry), CONTENT_TYPE_LATEST
