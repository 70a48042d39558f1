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

-- name: fold_finished_webhook_backends
-- fold_finished_backends, for the per-webhook counters (migration 0020).
WITH gone AS (
    SELECT webhook_id, metric, label, backend_pid FROM hookql_webhook_metric_counters c
    WHERE backend_pid <> 0
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.backend_pid)
    FOR UPDATE SKIP LOCKED
), folded AS (
    DELETE FROM hookql_webhook_metric_counters c USING gone g
    WHERE c.webhook_id = g.webhook_id AND c.metric = g.metric AND c.label = g.label
      AND c.backend_pid = g.backend_pid
    RETURNING c.webhook_id, c.metric, c.label, c.value
)
INSERT INTO hookql_webhook_metric_counters AS c (webhook_id, metric, label, backend_pid, value)
SELECT webhook_id, metric, label, 0, sum(value) FROM folded GROUP BY webhook_id, metric, label
ON CONFLICT (webhook_id, metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value;

-- name: forget_deleted_webhooks
-- The per-webhook counters of webhooks that no longer exist; their counts stay in the totals.
WITH gone AS (
    SELECT webhook_id, metric, label, backend_pid FROM hookql_webhook_metric_counters c
    WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = c.webhook_id)
    FOR UPDATE SKIP LOCKED
)
DELETE FROM hookql_webhook_metric_counters c USING gone g
WHERE c.webhook_id = g.webhook_id AND c.metric = g.metric AND c.label = g.label
  AND c.backend_pid = g.backend_pid;

-- name: webhooks_with_series
-- The webhooks that get series of their own, at most :max_webhooks: the largest backlogs first
-- (what an operator alerts on), then the most attempts, then the oldest webhook, so the choice
-- is stable while those figures are. Also how many webhooks there are in all.
WITH backlog AS (
    SELECT webhook_id, count(*) AS n FROM webhook_events WHERE status = 'pending' GROUP BY webhook_id
), attempted AS (
    SELECT webhook_id, sum(value) AS n FROM hookql_webhook_metric_counters
    WHERE metric = 'attempts' GROUP BY webhook_id
)
SELECT w.id AS webhook_id, COALESCE(b.n, 0)::bigint AS backlog, count(*) OVER () AS webhooks
FROM webhooks w
LEFT JOIN backlog b ON b.webhook_id = w.id
LEFT JOIN attempted a ON a.webhook_id = w.id
ORDER BY COALESCE(b.n, 0) DESC, COALESCE(a.n, 0) DESC, w.id
LIMIT :max_webhooks;

-- name: webhook_counters
SELECT webhook_id, metric, label, sum(value) AS value FROM hookql_webhook_metric_counters
WHERE webhook_id = ANY(:webhook_ids::bigint[])
GROUP BY webhook_id, metric, label;
