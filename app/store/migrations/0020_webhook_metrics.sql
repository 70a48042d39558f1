-- Per-webhook delivery counters for /metrics (issue #13): attempts by status class and the
-- commit→2xx latency histogram of each webhook, so an operator can alert on one webhook.
-- Kept exactly like hookql_metric_counters (0007): cumulative, fed by the attempts trigger in the
-- recording transaction whichever process records, one row per recording backend (no lock waits
-- between recorders), folded into backend_pid 0 at scrape time. A table of its own, keyed by
-- webhook: the scraper reads only the webhooks that get their own series, and the rows of a
-- deleted webhook can go without touching the totals.
--   metric 'attempts'        label: 2xx 3xx 4xx 5xx, or 'error'
--   metric 'latency_bucket'  label: upper bound in seconds (non-cumulative), or '+Inf'
--   metric 'latency_sum'     label: ''  (seconds)
-- The totals in hookql_metric_counters stay the sum over every webhook (deleted ones and the
-- attempts recorded before this migration included), so /metrics can report what no listed
-- webhook accounts for under webhook="other". No foreign key: the trigger stays one statement
-- with no lookups, and the scrape's fold removes the rows of webhooks that no longer exist.
CREATE TABLE hookql_webhook_metric_counters (
    webhook_id   bigint NOT NULL,
    metric       text NOT NULL,
    label        text NOT NULL,
    backend_pid  integer NOT NULL,
    value        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, metric, label, backend_pid)
);

-- 0011's function, counting per webhook first; the totals are the sums of those rows, written by
-- the same statement. Its cost grows with the webhooks in a batch (one upserted row per webhook,
-- metric and label): for 100-attempt statements over 10 webhooks, EXPLAIN ANALYZE measured the
-- trigger at a median 6.8 µs per attempt, against 2.8 µs for 0011's (2-core machine at load ~9).
CREATE OR REPLACE FUNCTION hookql_count_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH ok AS (  -- commit→2xx seconds of each successful attempt of a change (pings have none)
        SELECT a.webhook_id,
               GREATEST(0, date_part('epoch', a.attempted_at - e.changed_at) + a.duration_ms / 1000.0::float8) AS s
        FROM changed_rows a JOIN webhook_events e ON e.id = a.event_id AND e.entity_type IS NOT NULL
        WHERE a.status_code BETWEEN 200 AND 299
    ), counted AS (
        SELECT a.webhook_id, 'attempts' AS metric,
               CASE WHEN a.status_code BETWEEN 200 AND 599 THEN (a.status_code / 100)::text || 'xx'
                    ELSE 'error' END AS label,
               count(*)::double precision AS value
        FROM changed_rows a GROUP BY 1, 3
        UNION ALL
        SELECT webhook_id, 'latency_bucket', hookql_latency_bucket(s), count(*)::double precision
        FROM ok GROUP BY 1, 3
        UNION ALL
        SELECT webhook_id, 'latency_sum', '', sum(s) FROM ok GROUP BY 1
    ), per_webhook AS (
        INSERT INTO hookql_webhook_metric_counters AS c (webhook_id, metric, label, backend_pid, value)
        SELECT webhook_id, metric, label, pg_backend_pid(), value FROM counted
        ON CONFLICT (webhook_id, metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value
    )
    INSERT INTO hookql_metric_counters AS c (metric, label, backend_pid, value)
    SELECT metric, label, pg_backend_pid(), sum(value) FROM counted GROUP BY metric, label
    ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value;
    RETURN NULL;
END $$;
