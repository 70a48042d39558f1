-- The delivery dashboard's reads, always filtered by the viewer's seller (NULL: the operator).

-- name: webhooks_health
-- Webhooks with their health: backlog, the last attempt and event, and the 24 h success counts.
-- The one source of these figures: the dashboard's list and GraphQL's `Webhook` health fields
-- (a DataLoader: one statement for every webhook of a response). :webhook_ids NULL: all of them.
SELECT w.id, w.seller_id, s.name AS seller_name, w.name, w.url, w.entity_type, w.enabled,
       w.disabled_reason, w.created_at,
       (SELECT count(*) FROM webhook_events e WHERE e.webhook_id = w.id AND e.status = 'pending') AS backlog,
       la.status_code AS last_status_code, la.error AS last_error, la.attempted_at AS last_attempt_at,
       le.status AS last_event_status,
       st.total AS attempts_24h, st.ok AS ok_24h
FROM webhooks w
LEFT JOIN sellers s ON s.id = w.seller_id
LEFT JOIN LATERAL (SELECT a.status_code, a.error, a.attempted_at FROM webhook_attempts a
                   WHERE a.webhook_id = w.id ORDER BY a.attempted_at DESC LIMIT 1) la ON true
LEFT JOIN LATERAL (SELECT e.status FROM webhook_events e
                   WHERE e.webhook_id = w.id ORDER BY e.id DESC LIMIT 1) le ON true
LEFT JOIN LATERAL (SELECT count(*) AS total,
                          count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS ok
                   FROM webhook_attempts a
                   WHERE a.webhook_id = w.id AND a.attempted_at > now() - interval '24 hours') st ON true
WHERE (:seller_id::bigint IS NULL OR w.seller_id = :seller_id) AND (:webhook_ids::bigint[] IS NULL OR w.id = ANY(:webhook_ids))
ORDER BY w.id
LIMIT :limit;

-- name: recent_events
-- One page of a webhook's events, newest first, optionally of one status and before an id.
SELECT e.id, e.public_id, e.event, e.entity_type, e.entity_id, e.sequence, e.status, e.skip_reason, e.attempts,
       e.changed_at, e.created_at, e.next_attempt_at, e.finished_at, e.error
FROM webhook_events e
WHERE e.webhook_id = :webhook_id AND (:status::text IS NULL OR e.status = :status)
  AND (:before_id::bigint IS NULL OR e.id < :before_id)
ORDER BY e.id DESC
LIMIT :limit;

-- name: newest_attempts
-- The newest `per_event` attempts of each event, newest first.
SELECT id, event_id, attempted_at, duration_ms, status_code, response_body, error
FROM (SELECT a.*, row_number() OVER (PARTITION BY a.event_id ORDER BY a.id DESC) AS newest
      FROM webhook_attempts a WHERE a.event_id = ANY(:event_ids::bigint[])) a
WHERE newest <= :per_event
ORDER BY event_id, attempted_at DESC;

-- name: event_webhook
-- The webhook of an event the viewer may see (no row otherwise).
SELECT e.webhook_id FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
WHERE e.id = :event_id AND (:seller_id::bigint IS NULL OR w.seller_id = :seller_id);

-- name: event
-- One event the viewer may see, with its webhook's name.
SELECT e.id, e.public_id, e.event, e.entity_type, e.entity_id, e.sequence, e.status, e.attempts,
       e.changed_at, e.created_at, e.next_attempt_at, e.finished_at, e.error, e.webhook_id, w.name AS webhook_name
FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
WHERE e.id = :event_id AND (:seller_id::bigint IS NULL OR w.seller_id = :seller_id);

-- name: attempt_details
-- Every attempt of an event, newest first, with the request it sent and the answer it got.
SELECT id, attempted_at, duration_ms, status_code, error, response_headers, response_body,
       request_method, request_url, request_headers, request_body
FROM webhook_attempts WHERE event_id = :event_id
ORDER BY id DESC;

-- name: attempt_body
-- The exact body an attempt the viewer may see sent (NULL: not recorded).
SELECT a.request_body FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook_id
WHERE a.id = :attempt_id AND (:seller_id::bigint IS NULL OR w.seller_id = :seller_id);

-- name: hourly_deliveries
-- A webhook's attempts in each of the last 24 hours (the current one included), oldest first:
-- answered 2xx, or not (an error status, or no answer), and the median duration.
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                           interval '1 hour') AS hour)
SELECT h.hour,
       count(a.id) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS ok,
       count(a.id) FILTER (WHERE a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299) AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms
FROM hours h
LEFT JOIN webhook_attempts a ON a.webhook_id = :webhook_id
     AND a.attempted_at >= h.hour AND a.attempted_at < h.hour + interval '1 hour'
GROUP BY h.hour
ORDER BY h.hour;
