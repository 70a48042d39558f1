-- Evaluation budget breaches (app.store.budget_breaches): failed events and a webhook's run of breaches.

-- name: record_budget_outcomes
WITH failed AS (
    INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,
                                payload, payload_hash, changed_at, error, finished_at)
    SELECT u.p, u.w, u.t, u.i, u.e, u.s, 'failed', u.pl::json, u.h, u.c, u.err, now()
    FROM unnest(:public_ids::text[], :webhook_ids::bigint[], :entity_types::text[], :entity_ids::bigint[],
                :events::text[], :sequences::bigint[], :payloads::text[], :payload_hashes::bytea[],
                :changed_ats::timestamptz[], :errors::text[]) u(p, w, t, i, e, s, pl, h, c, err)
), counted AS (
    -- /metrics: hookql_evaluation_budget_breaches_total{reason}, kept as the delivery counters
    -- are (rows per backend, summed at scrape time)
    INSERT INTO hookql_metric_counters AS c (metric, label, backend_pid, value)
    SELECT 'budget_breaches', r, pg_backend_pid(), count(*) FROM unnest(:reasons::text[]) r GROUP BY r
    ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value
), streak AS (
    SELECT w.id, u.err, w.enabled AND u.err IS NOT NULL AND w.budget_breaches + 1 >= :breaches_to_disable AS disable,
           w.budget_breaches + 1 AS breaches
    FROM unnest(:streak_webhook_ids::bigint[], :streak_errors::text[]) u(id, err) JOIN webhooks w ON w.id = u.id
    WHERE u.err IS NOT NULL OR w.budget_breaches > 0
)
UPDATE webhooks w SET
    -- a disabled webhook starts a new count when it is enabled again
    budget_breaches = CASE WHEN s.err IS NULL OR s.disable THEN 0 ELSE s.breaches END,
    enabled = w.enabled AND NOT s.disable,
    disabled_reason = CASE WHEN s.disable
        THEN format('its query exceeded the evaluation budget %s times in a row (last: %s)', s.breaches, s.err)
        ELSE w.disabled_reason END
FROM streak s WHERE w.id = s.id
RETURNING w.id, s.disable, w.disabled_reason;
