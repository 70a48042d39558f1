-- What /metrics reports, read at scrape time (app.store.metrics).

-- name: try_fold_lock
-- Folding is housekeeping: one scraper at a time does it, the others skip it.
SELECT pg_try_advisory_xact_lock(:key);

-- name: fold_finished_backends
-- The counter rows of backends that have ended, added into the row of backend_pid 0 of their
-- metric and label; rows a concurrent transaction holds are left for the next scrape.
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
ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value;

-- name: events_by_status
SELECT status, count(*) AS n FROM webhook_events GROUP BY status;

-- name: pending_events
SELECT count(*) AS backlog, count(*) FILTER (WHERE attempts > 0) AS retrying,
       COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s
FROM webhook_events WHERE status = 'pending';

-- name: changes_unprocessed
SELECT count(*) FROM changes;

-- name: entities_pending
SELECT count(*) FROM pending_entities;

-- name: webhooks_by_state
SELECT count(*) FILTER (WHERE enabled) AS enabled, count(*) FILTER (WHERE NOT enabled) AS disabled FROM webhooks;

-- name: sequence_value
-- How many ids a serial sequence has handed out; last_value is NULL until the first nextval().
SELECT COALESCE(last_value, 0) AS n FROM pg_sequences
WHERE schemaname = current_schema() AND sequencename = :sequence;

-- name: counters
SELECT metric, label, sum(value) AS value FROM hookql_metric_counters GROUP BY metric, label;
