-- Observability (issue #6): the live event stream and the delivery counters behind /metrics.
-- Both are fed by triggers, so they see what every engine process (serve or worker) records,
-- without the delivery code knowing about them.

-- 1. Live stream. Whenever an event is created, changes status or gains an attempt, its id is
-- announced on `hookql_event_updates`. Payloads are comma-separated ids only (NOTIFY payloads are
-- capped at 8000 bytes; 300 ids of at most 19 digits fit): listeners re-read the rows, so a
-- notification never carries data a subscriber may not see, and the table stays the truth.
-- Statement-level triggers, so a listener inserting 10,000 events sends ~34 notifications.
CREATE FUNCTION hookql_announce_event_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'webhook_attempts' THEN
        PERFORM pg_notify('hookql_event_updates', string_agg(n.id::text, ','))
        FROM (SELECT d.event_id AS id, (row_number() OVER () - 1) / 300 AS chunk
              FROM (SELECT DISTINCT event_id FROM changed_rows) d) n
        GROUP BY n.chunk;
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('hookql_event_updates', string_agg(n.id::text, ','))
        FROM (SELECT id, (row_number() OVER () - 1) / 300 AS chunk FROM changed_rows) n
        GROUP BY n.chunk;
    ELSE
        -- Only visible changes: the dispatcher's leases (leased_until) touch rows constantly.
        PERFORM pg_notify('hookql_event_updates', string_agg(n.id::text, ','))
        FROM (SELECT c.id, (row_number() OVER () - 1) / 300 AS chunk
              FROM changed_rows c JOIN previous_rows p ON p.id = c.id
              WHERE c.status IS DISTINCT FROM p.status OR c.attempts IS DISTINCT FROM p.attempts) n
        GROUP BY n.chunk;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_announce_insert AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookql_announce_event_updates();
CREATE TRIGGER webhook_events_announce_update AFTER UPDATE ON webhook_events
    REFERENCING NEW TABLE AS changed_rows OLD TABLE AS previous_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookql_announce_event_updates();

-- 2. Delivery counters. Attempts and events are pruned after the retention period, so counting
-- rows at scrape time would make counters go down (Prometheus would read a reset). Instead a
-- trigger adds every recorded attempt to cumulative counters here, in the recording transaction.
-- Rows are keyed by the recording backend's pid: one backend runs one transaction at a time, so
-- no two transactions ever update the same row (no lock waits, no deadlocks on the delivery path).
-- The scraper sums the rows and folds those of backends that are gone into backend_pid 0.
--   metric 'attempts'        label: status class of the answer: 2xx 3xx 4xx 5xx, or 'error'
--   metric 'latency_bucket'  label: upper bound in seconds (non-cumulative bucket), or '+Inf'
--   metric 'latency_sum'     label: ''  (seconds)
-- Latency is commit→2xx: the end of the successful attempt minus the commit time of the latest
-- change coalesced into the event (`changed_at`); pings have no change and are not counted.
CREATE TABLE hookql_metric_counters (
    metric       text NOT NULL,
    label        text NOT NULL,
    backend_pid  integer NOT NULL,
    value        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, label, backend_pid)
);

CREATE FUNCTION hookql_latency_bucket(seconds double precision) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(
        (SELECT u.bound::text FROM unnest(ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600,
                                                21600, 86400]::numeric[]) AS u (bound)
         WHERE seconds <= u.bound ORDER BY u.bound LIMIT 1),
        '+Inf');
$$;

CREATE FUNCTION hookql_count_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH counted AS (
        SELECT 'attempts' AS metric,
               CASE WHEN a.status_code BETWEEN 200 AND 599 THEN (a.status_code / 100)::text || 'xx'
                    ELSE 'error' END AS label,
               1::double precision AS value
        FROM changed_rows a
        UNION ALL
        SELECT m.metric, m.label, m.value
        FROM changed_rows a
        JOIN webhook_events e ON e.id = a.event_id AND e.entity_type IS NOT NULL
        CROSS JOIN LATERAL (SELECT GREATEST(0, extract(epoch FROM
                               a.attempted_at + a.duration_ms * interval '1 millisecond' - e.changed_at)
                           )::double precision AS s) l
        CROSS JOIN LATERAL (VALUES ('latency_bucket', hookql_latency_bucket(l.s), 1::double precision),
                                   ('latency_sum', '', l.s)) AS m (metric, label, value)
        WHERE a.status_code BETWEEN 200 AND 299
    )
    INSERT INTO hookql_metric_counters AS c (metric, label, backend_pid, value)
    SELECT metric, label, pg_backend_pid(), sum(value) FROM counted GROUP BY metric, label
    ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_attempts_count AFTER INSERT ON webhook_attempts
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookql_count_attempts();
CREATE TRIGGER webhook_attempts_announce AFTER INSERT ON webhook_attempts
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookql_announce_event_updates();
