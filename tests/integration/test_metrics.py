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

from app.config import Settings
from app.policy import ids
from app.store import db
from app.web.metrics import render_metrics
from tests.support.engine_harness import add_webhook, running_engine, settled, wait_until
from tests.support.live_server import serving
from tests.support.receivers import Receiver


def metrics_app(pool: asyncpg.Pool, max_webhooks: int = Settings.metrics_max_webhooks) -> Starlette:
    async def metrics(request: Request) -> Response:
        body, content_type = await render_metrics(pool, max_webhooks=max_webhooks)
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/metrics", metrics)])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(base_url: str) -> Samples:
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


def value(samples: Samples, name: str, **labels: str) -> float:
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


def webhook_label(webhook_id: int) -> str:
    return ids.encode("Webhook", webhook_id)


def by_webhook(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """The samples of `name` with `labels`, by their `webhook` label."""
    found = {}
    for (sample, sample_labels), v in samples.items():
        as_dict = dict(sample_labels)
        if sample == name and "webhook" in as_dict and all(as_dict.get(k) == x for k, x in labels.items()):
            found[as_dict["webhook"]] = v
    return found


async def test_per_webhook_series_are_capped_at_the_largest_backlogs(pool: asyncpg.Pool) -> None:
    # given: 12 webhooks; webhook i has i pending events and one failed attempt
    hooks = []
    async with pool.acquire() as conn:
        for i in range(12):
            hook = await given_webhook(conn)
            hooks.append(hook)
            failed = await given_event(conn, hook, 0, "failed", attempts=1)
            await given_attempt(conn, failed, hook, 418)
            for n in range(1, i + 1):
                await given_event(conn, hook, n, "pending")
    # when: scraped with a cap of 5 webhooks
    async with serving(metrics_app(pool, max_webhooks=5)) as base_url:
        samples = await scrape(base_url)
    # then: the 5 largest backlogs have series of their own, the other 7 are summed under "other"
    largest = {webhook_label(h): float(i) for i, h in enumerate(hooks) if i >= 7}
    backlog = by_webhook(samples, "hookql_webhook_backlog_events")
    assert backlog == {**largest, "other": float(sum(range(7)))}
    attempts_4xx = by_webhook(samples, "hookql_webhook_attempts_total", status_class="4xx")
    assert attempts_4xx == {**{label: 1.0 for label in largest}, "other": 7.0}
    assert value(samples, "hookql_webhooks_aggregated") == 7
    # each family sums over `webhook` to its total
    assert sum(backlog.values()) == value(samples, "hookql_backlog_events")
    assert sum(attempts_4xx.values()) == value(samples, "hookql_attempts_total", status_class="4xx")
    # and the series count is bounded by the cap, not by the number of webhooks
    webhook_labels = {dict(labels).get("webhook") for _, labels in samples} - {None}
    assert len(webhook_labels) == 6
    per_webhook = [key for key in samples if any(name == "webhook" for name, _ in key[1])]
    assert len(per_webhook) == 6 * 23


async def test_per_webhook_counters_add_up_across_backends_and_survive_pruning(
    pool: asyncpg.Pool, database_url: str
) -> None:
    # given: attempts of two webhooks recorded by two other backends, one of which has ended
    live = await db.connect(database_url)
    ended = await db.connect(database_url)
    try:
        first, second = await given_webhook(live), await given_webhook(live)
        for conn, hook, code in [(live, first, 204), (ended, first, 500), (ended, second, 200), (live, second, None)]:
            event = await given_event(conn, hook, await conn.fetchval("SELECT count(*) FROM webhook_events"),
                                      "delivered", age_s=0.2)
            await given_attempt(conn, event, hook, code, duration_ms=10)
        await ended.close()
        async with serving(metrics_app(pool)) as base_url:
            before = await scrape(base_url)
            # when: retention prunes every event (and their attempts), and the second webhook is deleted
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM webhook_events")
                await conn.execute("DELETE FROM webhooks WHERE id = $1", second)
            after = await scrape(base_url)
    finally:
        await live.close()
    # then: each webhook's counters are what both backends recorded for it
    a, b = webhook_label(first), webhook_label(second)
    assert value(before, "hookql_webhook_attempts_total", webhook=a, status_class="2xx") == 1
    assert value(before, "hookql_webhook_attempts_total", webhook=a, status_class="5xx") == 1
    assert value(before, "hookql_webhook_attempts_total", webhook=b, status_class="2xx") == 1
    assert value(before, "hookql_webhook_attempts_total", webhook=b, status_class="error") == 1
    assert value(before, "hookql_webhook_delivery_latency_seconds_count", webhook=a) == 1
    assert value(before, "hookql_webhook_delivery_latency_seconds_bucket", webhook=b, le="0.25") == 1
    # pruning lowers no counter; a deleted webhook's series ends and "other" takes its counts
    assert value(after, "hookql_webhook_attempts_total", webhook=a, status_class="5xx") == 1
    assert b not in by_webhook(after, "hookql_webhook_backlog_events")
    assert value(after, "hookql_webhook_attempts_total", webhook="other", status_class="2xx") == 1
    assert value(after, "hookql_webhook_attempts_total", webhook="other", status_class="error") == 1
    assert value(after, "hookql_webhook_delivery_latency_seconds_count", webhook="other") == 1
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT DISTINCT webhook_id, backend_pid FROM hookql_webhook_metric_counters")
    # the ended backend's rows are folded into backend 0; the deleted webhook's rows are gone
    assert {r["webhook_id"] for r in rows} == {first}
    assert ended.get_server_pid() not in {r["backend_pid"] for r in rows}


async def test_latency_buckets_are_upper_inclusive_like_prometheus_le(pool: asyncpg.Pool) -> None:
    cases = {0.0: "0.1", 0.1: "0.1", 0.1001: "0.25", 2.5: "2.5", 2.51: "5", 86400.0: "86400", 86400.5: "+Inf"}
    got = {s: await pool.fetchval("SELECT hookql_latency_bucket($1::float8)", s) for s in cases}
    assert got == cases


async def test_per_webhook_series_match_the_event_log_of_a_real_engine(fixture_database_url: str) -> None:
    # given: three webhooks on real receivers (one answers 200, one fails twice then answers,
    # one always answers 404 and gives up after 2 attempts), and the engine delivering to them
    receivers = [
        await Receiver().start(),
        await Receiver(respond=lambda n: (500, {}, b"down") if n <= 2 else (200, {}, b"ok")).start(),
        await Receiver(respond=lambda n: (404, {}, b"")).start(),
    ]
    scraper = await db.create_pool(fixture_database_url, min_size=1, max_size=2)
    try:
        async with running_engine(fixture_database_url) as run:
            hooks = [
                (await add_webhook(run.pool, r.url, max_attempts=2 if i == 2 else 10))[0]
                for i, r in enumerate(receivers)
            ]
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id IN (3, 4)")
            await wait_until(lambda: settled(run.pool))
            async with serving(metrics_app(scraper, max_webhooks=2)) as base_url:
                while_running = await scrape(base_url)
        # the engine's backends have ended: their counter rows are folded on this scrape
        async with serving(metrics_app(scraper, max_webhooks=2)) as base_url:
            after = await scrape(base_url)
        log = await scraper.fetch(
            "SELECT a.webhook_id, CASE WHEN a.status_code BETWEEN 200 AND 599"
            " THEN (a.status_code / 100)::text || 'xx' ELSE 'error' END AS class, count(*) AS n"
            " FROM webhook_attempts a GROUP BY 1, 2"
        )
    finally:
        await scraper.close()
        for r in receivers:
            await r.stop()
    # then: every attempt in the log is counted once, under its webhook's series or "other"
    assert after == while_running
    expected: dict[str, dict[str, float]] = {}
    shown = set(by_webhook(after, "hookql_webhook_backlog_events")) - {"other"}
    assert len(shown) == 2
    for row in log:
        label = webhook_label(row["webhook_id"])
        label = label if label in shown else "other"
        expected.setdefault(row["class"], {}).setdefault(label, 0.0)
        expected[row["class"]][label] += row["n"]
    for status_class in ("2xx", "4xx", "5xx"):
        got = {k: v for k, v in by_webhook(after, "hookql_webhook_attempts_total", status_class=status_class).items()
               if v}
        assert got == expected.get(status_class, {}), status_class
    assert sum(len(r.received) for r in receivers) == sum(row["n"] for row in log)
    delivered = sum(row["n"] for row in log if row["class"] == "2xx")
    latency_counts = by_webhook(after, "hookql_webhook_delivery_latency_seconds_count")
    assert sum(latency_counts.values()) == delivered == 4  # two invoices to each of two webhooks
    assert {webhook_label(h) for h in hooks} >= shown
