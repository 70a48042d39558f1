-- Webhooks, their secrets and their event log, as the API and the dashboard use them. Creating
-- and updating a webhook write only the columns given: those two statements are composed in
-- app/store/webhooks.py from its COLUMNS list.

-- name: get_webhook
-- The webhook if :owner (a seller id, or NULL for the operator) may see it.
SELECT * FROM webhooks WHERE id = :webhook_id AND (:owner::bigint IS NULL OR seller_id = :owner);

-- name: list_webhooks
SELECT * FROM webhooks WHERE :owner::bigint IS NULL OR seller_id = :owner ORDER BY id;

-- name: lock_seller
-- FOR NO KEY UPDATE, not FOR UPDATE: rows that reference the seller (products, invoices) take
-- FOR KEY SHARE on it as they are written, and are not held up.
SELECT 1 FROM sellers WHERE id = :seller_id FOR NO KEY UPDATE;

-- name: count_seller_webhooks
SELECT count(*) FROM webhooks WHERE seller_id = :seller_id;

-- name: delete_webhook
DELETE FROM webhooks WHERE id = :webhook_id;

-- name: rotate_secret
-- A rotated-out secret keeps signing for 24 hours, so receivers can switch over.
UPDATE webhooks SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours',
    secret = :new_secret
WHERE id = :webhook_id RETURNING *;

-- name: lock_webhook
SELECT 1 FROM webhooks WHERE id = :webhook_id FOR NO KEY UPDATE;

-- name: disable_webhook
UPDATE webhooks SET enabled = false, disabled_reason = :reason WHERE id = :webhook_id;

-- name: next_sequences
UPDATE webhooks SET last_sequence = last_sequence + :count WHERE id = :webhook_id RETURNING last_sequence;

-- name: insert_finished_event
INSERT INTO webhook_events (public_id, webhook_id, event, sequence, status, payload, payload_hash, changed_at,
                            attempts, finished_at)
VALUES (:public_id, :webhook_id, :event, :sequence, :status, :payload, :payload_hash, :changed_at, :attempts, now())
RETURNING id;

-- name: insert_attempt
-- The request columns arrive masked (app.policy.masking; migration 0013).
INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, response_headers,
                              response_body, error, request_method, request_url, request_headers, request_body)
VALUES (:event_id, :webhook_id, :attempted_at, :duration_ms, :status_code, :response_headers, :response_body,
        :error, :request_method, :request_url, :request_headers::jsonb, :request_body)
RETURNING id;

-- name: list_events
-- Newest first (keyset on id). :retrying, unless null, keeps only the events that are (true) or
-- are not (false) waiting for a retry: pending after at least one failed attempt.
SELECT * FROM webhook_events
WHERE webhook_id = :webhook_id AND (:status::text IS NULL OR status = :status)
  AND (:retrying::boolean IS NULL OR (status = 'pending' AND attempts > 0) = :retrying)
  AND (:before_id::bigint IS NULL OR id < :before_id)
ORDER BY id DESC LIMIT :limit;

-- name: get_event
SELECT e.* FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
WHERE e.id = :event_id AND (:owner::bigint IS NULL OR w.seller_id = :owner);

-- name: attempts_for
SELECT * FROM webhook_attempts WHERE event_id = ANY(:event_ids::bigint[]) ORDER BY id;

-- name: event_webhook
SELECT webhook_id FROM webhook_events WHERE id = :event_id;

-- name: lock_event
SELECT * FROM webhook_events WHERE id = :event_id FOR UPDATE;

-- name: pending_for_entity
SELECT 1 FROM webhook_events
WHERE webhook_id = :webhook_id AND entity_type = :entity_type AND entity_id = :entity_id AND status = 'pending';

-- name: newer_for_entity
SELECT 1 FROM webhook_events
WHERE webhook_id = :webhook_id AND entity_type = :entity_type AND entity_id = :entity_id
  AND id > :event_id AND status IN ('delivered', 'failed', 'cancelled');

-- name: requeue_event
UPDATE webhook_events SET status = 'pending', next_attempt_at = now(), attempts = 0, leased_until = NULL,
    finished_at = NULL
WHERE id = :event_id;

-- name: notify
SELECT pg_notify(:channel, '');

-- name: cancel_event
UPDATE webhook_events SET status = 'cancelled', finished_at = now() WHERE id = :event_id;

-- name: forget_payload_hash
UPDATE webhook_entity_state SET last_payload_hash = NULL
WHERE webhook_id = :webhook_id AND entity_type = :entity_type AND entity_id = :entity_id;

-- name: replay_targets
SELECT DISTINCT ON (entity_id) entity_type, entity_id, event, changed_at FROM webhook_events
WHERE webhook_id = :webhook_id AND entity_type = :entity_type AND created_at >= :since
ORDER BY entity_id, id DESC;

-- name: send_now
-- A pending event not in flight becomes due now (a retry's backoff is cut short).
UPDATE webhook_events SET next_attempt_at = now()
WHERE id = :event_id AND status = 'pending' AND (leased_until IS NULL OR leased_until <= now());

-- name: event_payload_text
-- The payload as stored: the exact JSON text delivered (json keeps it, key order included).
SELECT payload::text FROM webhook_events WHERE id = :event_id;

-- name: event_id_by_public_id
SELECT id FROM webhook_events WHERE public_id = :public_id;
