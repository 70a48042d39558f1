-- The live feed of webhook events (app.store.events_feed).

-- name: event_updates
-- The announced events as they are now, each with its owner and its latest attempt (if any).
SELECT e.id, e.public_id, e.webhook_id, w.seller_id, e.entity_type, e.entity_id, e.event, e.sequence,
       e.status, e.skip_reason, e.payload, e.attempts, e.changed_at, e.created_at, e.next_attempt_at, e.finished_at,
       a.id AS attempt_id, a.attempted_at, a.duration_ms, a.status_code, a.response_headers,
       a.response_body, a.error
FROM webhook_events e
JOIN webhooks w ON w.id = e.webhook_id
LEFT JOIN LATERAL (SELECT * FROM webhook_attempts x WHERE x.event_id = e.id ORDER BY x.id DESC LIMIT 1) a
       ON true
WHERE e.id = ANY(:event_ids::bigint[])
ORDER BY e.id;
