"""/metrics: scraped over real HTTP from a served app, after writing rows with plain SQL the way
the engine processes (any of them) would."""

from __future__ import annotations

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.store import db
from app.web.metrics import render_metrics
from tests.support.live_server import serving


def metrics_app(pool: asyncpg.Pool) -> Starlette:
    async def metrics(request: Request) -> Response:
        body, content_type = await render_metrics(pool)
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/metrics", metrics)])


async def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(base_url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def given_webhook(conn: asyncpg.Connection, *, enabled: bool = True) -> int:
    seller_id = await conn.fetchval("INSERT INTO sellers (name) VALUES ('Acme') RETURNING id")
    return int(
        await conn.fetchval(
            "INSERT INTO webhooks (seller_id, name, url, entity_type, query, secret, enabled,"
            " disabled_reason)"
            " VALUES ($1, 'w', 'https://example.com/h', 'invoice', 'query { __typename }', 'whsec_x', $2,"
            " CASE WHEN $2 THEN NULL ELSE 'receiver answered 410 Gone' END) RETURNING id",
            seller_id,
            enabled,
        )
    )


async def given_event(
    conn: asyncpg.Connection, webhook_id: int, n: int, status: str, *, attempts: int = 0, age_s: float = 0
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence,"
            " status, payload, payload_hash, changed_at, attempts)"
            " VALUES ($1, $2, 'invoice', $3, 'invoice.updated', $3, $4, '{}', '\\x00',"
            " now() - $5 * interval '1 second', $6) RETURNING id",
            f"evt_{webhook_id}_{n}",
            webhook_id,
            n,
            status,
            age_s,
            attempts,
        )
    )


async def given_attempt(
    conn: asyncpg.Connection, event_id: int, webhook_id: int, status_code: int | None, duration_ms: int = 100
) -> None:
    await conn.execute(
        "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, error)"
        " VALUES ($1, $2, now(), $3, $4, $5)",
        event_id,
        webhook_id,
        duration_ms,
        status_code,
        None if status_code else "connection refused",
    )


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_gauges_and_counters_reflect_the_tables(pool: asyncpg.Pool) -> None:
    # given: a captured change, an enabled and a disabled webhook, events in several states
    async with pool.acquire() as conn:
        seller = await conn.fetchval("INSERT INTO sellers (name) VALUES ('S') RETURNING id")
        product = await conn.fetchval(
            "INSERT INTO products (seller_id, title) VALUES ($1, 'p') RETURNING id", seller
        )
        await conn.execute(
            "INSERT INTO variants (product_id, sku, price) VALUES ($1, 'A', 1), ($1, 'B', 2)", product
        )
        hook = await given_webhook(conn)
        await given_webhook(conn, enabled=False)
        delivered = await given_event(conn, hook, 1, "pending", age_s=3)
        retrying = await given_event(conn, hook, 2, "pending", attempts=1)
        await given_event(conn, hook, 3, "skipped")
        await given_attempt(conn, retrying, hook, 503)
        await given_attempt(conn, retrying, hook, None)
        await given_attempt(conn, delivered, hook, 200, duration_ms=500)
        await conn.execute(
            "UPDATE webhook_events SET status = 'delivered', attempts = 1 WHERE id = $1", delivered
        )

    # when: Prometheus scrapes
    async with serving(metrics_app(pool)) as base_url:
        samples = await scrape(base_url)

    # then
    assert value(samples, "hookql_events", status="pending") == 1
    assert value(samples, "hookql_events", status="delivered") == 1
    assert value(samples, "hookql_events", status="skipped") == 1
    assert value(samples, "hookql_events", status="failed") == 0
    assert value(samples, "hookql_backlog_events") == 1
    assert value(samples, "hookql_retry_queue_events") == 1
    assert value(samples, "hookql_webhooks_disabled") == 1
    assert value(samples, "hookql_webhooks", state="enabled") == 1
    assert value(samples, "hookql_changes_captured_total") == 2  # two variants created
    assert value(samples, "hookql_changes_unprocessed") == 2
    assert value(samples, "hookql_events_created_total") == 3
    assert value(samples, "hookql_attempts_total", status_class="2xx") == 1
    assert value(samples, "hookql_attempts_total", status_class="5xx") == 1
    assert value(samples, "hookql_attempts_total", status_class="error") == 1
    assert value(samples, "hookql_attempts_total", status_class="4xx") == 0
    # the change committed ~3 s before the 2xx, which took 0.5 s: the 5 s bucket, not the 2.5 s one
    assert value(samples, "hookql_delivery_latency_seconds_count") == 1
    assert value(samples, "hookql_delivery_latency_seconds_bucket", le="2.5") == 0
    assert value(samples, "hookql_delivery_latency_seconds_bucket", le="5.0") == 1
    assert value(samples, "hookql_delivery_latency_seconds_bucket", le="+Inf") == 1
    assert 3.4 < value(samples, "hookql_delivery_latency_seconds_sum") < 4.5


async def test_counters_survive_pruning_and_finished_processes(pool: asyncpg.Pool, database_url: str) -> None:
    # given: attempts recorded by another process's connection, which then goes away
    other = await db.connect(database_url)
    try:
        hook = await given_webhook(other)
        for n in range(3):
            event = await given_event(other, hook, n, "delivered", age_s=0.2)
            await given_attempt(other, event, hook, 204, duration_ms=10)
    finally:
        await other.close()

    async with serving(metrics_app(pool)) as base_url:
        before = await scrape(base_url)
        # when: retention prunes the delivered events (and their attempts, by cascade)
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM webhook_events")
        after = await scrape(base_url)

    # then: the gauges drop, the counters do not
    assert value(before, "hookql_attempts_total", status_class="2xx") == 3
    assert value(after, "hookql_attempts_total", status_class="2xx") == 3
    assert value(after, "hookql_delivery_latency_seconds_bucket", le="0.25") == 3
    assert value(after, "hookql_events", status="delivered") == 0
    async with pool.acquire() as conn:
        # the finished backend's rows were folded into the shared row
        pids = await conn.fetch("SELECT DISTINCT backend_pid FROM hookql_metric_counters")
    assert [r["backend_pid"] for r in pids] == [0]


async def test_label_cardinality_is_bounded(pool: asyncpg.Pool) -> None:
    # given: many webhooks, each with an event and an attempt
    async with pool.acquire() as conn:
        for _ in range(30):
            hook = await given_webhook(conn)
            event = await given_event(conn, hook, 1, "failed", attempts=1)
            await given_attempt(conn, event, hook, 418)
    async with serving(metrics_app(pool)) as base_url:
        samples = await scrape(base_url)
    # then: no label names a webhook; the series count does not grow with webhooks
    label_names = {name for _, labels in samples for name, _ in labels}
    assert label_names <= {"status", "state", "status_class", "le", "reason"}
    assert len(samples) < 60


async def test_latency_buckets_are_upper_inclusive_like_prometheus_le(pool: asyncpg.Pool) -> None:
    cases = {0.0: "0.1", 0.1: "0.1", 0.1001: "0.25", 2.5: "2.5", 2.51: "5", 86400.0: "86400", 86400.5: "+Inf"}
    got = {s: await pool.fetchval("SELECT hookql_latency_bucket($1::float8)", s) for s in cases}
    assert got == cases
