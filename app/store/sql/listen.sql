-- `hookql listen`: webhooks held by a listener, the events it claims and the answers it reports
-- (app/store/listen.py). A webhook is held while `listen_until` is in the future; a temporary one
-- (`listen_only`) is never delivered over HTTP, held or not.

-- name: hold_webhook
-- Hold (or keep holding) a webhook for :lease_s more seconds; `listen_only` marks one that
-- `hookql listen` created for itself.
UPDATE webhooks SET listen_until = now() + make_interval(secs => :lease_s),
    listen_only = listen_only OR :listen_only
WHERE id = :webhook_id
RETURNING listen_until;

-- name: renew_hold
-- Only a hold that has not lapsed is renewed: a lapsed temporary webhook is being deleted, and a
-- lapsed attached one is back on HTTP delivery.
UPDATE webhooks SET listen_until = now() + make_interval(secs => :lease_s)
WHERE id = :webhook_id AND listen_until > now()
RETURNING listen_until;

-- name: release_hold
-- A temporary webhook goes with its listener; an attached one is delivered over HTTP again, and
-- the dispatchers are woken for the events it kept pending.
WITH gone AS (
    DELETE FROM webhooks WHERE id = :webhook_id AND listen_only RETURNING id
), released AS (
    UPDATE webhooks SET listen_until = NULL WHERE id = :webhook_id AND NOT listen_only RETURNING id
), wake AS (
    SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM released LIMIT 1) r
)
SELECT (SELECT count(*) FROM gone) > 0 AS deleted, (SELECT count(*) FROM released) > 0 AS released,
       (SELECT count(*) FROM wake) AS woken;

-- name: sweep_lapsed
-- What the engine does with holds whose listener stopped renewing (it died, or lost its
-- connection): temporary webhooks are deleted, attached ones are released to HTTP delivery.
WITH gone AS (
    DELETE FROM webhooks WHERE listen_only AND listen_until < now() RETURNING id
), released AS (
    UPDATE webhooks SET listen_until = NULL WHERE NOT listen_only AND listen_until < now() RETURNING id
), wake AS (
    SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM released LIMIT 1) r
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM released) AS released,
       (SELECT count(*) FROM wake) AS woken,
       -- the holds left (those ended here are past their listen_until): when the first lapses
       (SELECT extract(epoch FROM min(listen_until) - now())::float8 FROM webhooks
        WHERE listen_until IS NOT NULL AND listen_until >= now()) AS next_lapse_in_s;

-- name: claim_for_listener
-- The held webhook's due events, leased to its listener for the webhook's timeout plus
-- :margin_s (time to report the answer): at most `concurrency` leased at once, one in flight
-- per (webhook, entity), oldest due first. The same columns as pipeline.sql's claim_events
-- (app.store.pipeline.ClaimedEvent). The lease is checked again on the locked row: a dispatcher
-- that claimed the event just before the webhook was held keeps it.
WITH hook AS (
    SELECT id, concurrency FROM webhooks WHERE id = :webhook_id AND enabled AND listen_until > now()
), due AS (
    SELECT e.id FROM webhook_events e
    WHERE e.webhook_id = (SELECT id FROM hook) AND e.status = 'pending' AND e.next_attempt_at <= now()
      AND (e.leased_until IS NULL OR e.leased_until <= now())
      AND (e.entity_type IS NULL OR e.entity_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM webhook_events x WHERE x.webhook_id = e.webhook_id AND x.entity_type = e.entity_type
          AND x.entity_id = e.entity_id AND x.leased_until > now()))
    ORDER BY e.next_attempt_at, e.id
    LIMIT greatest(0, (SELECT concurrency FROM hook)
                      - (SELECT count(*) FROM webhook_events l WHERE l.webhook_id = :webhook_id AND l.leased_until > now()))
    FOR NO KEY UPDATE OF e SKIP LOCKED
)
UPDATE webhook_events e
SET leased_until = now() + make_interval(secs => w.timeout_seconds + :margin_s)
FROM webhooks w
WHERE e.id IN (SELECT id FROM due) AND w.id = e.webhook_id AND e.status = 'pending'
  AND (e.leased_until IS NULL OR e.leased_until <= now())
RETURNING e.id, e.public_id, e.webhook_id, e.entity_type, e.entity_id, e.event, e.sequence,
          e.payload::text AS payload, e.changed_at, e.attempts,
          w.url, w.method, w.format, w.headers, w.secret, w.previous_secret, w.previous_secret_expires_at,
          w.timeout_seconds, w.max_attempts, w.concurrency, w.live_concurrency, w.failing_since, w.seller_id,
          w.hmac_key, w.hmac_header;

-- name: reported_event_webhook
-- The webhook of an event :owner (a seller id, or NULL for the operator) may see.
SELECT e.webhook_id FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
WHERE e.id = :event_id AND (:owner::bigint IS NULL OR w.seller_id = :owner);

-- name: key_share_webhook
-- Before the event, as recording locks them (app.store.pipeline.record_attempts).
SELECT 1 FROM webhooks WHERE id = :webhook_id FOR KEY SHARE;

-- name: lock_reported_event
-- An event a listener may report on: pending, leased (claimed by a listener and not yet
-- reported) and of a held webhook; locked until the report is recorded, so a second report of
-- the same attempt finds it no longer leased. Columns as claim_for_listener's.
SELECT e.id, e.public_id, e.webhook_id, e.entity_type, e.entity_id, e.event, e.sequence,
       e.payload::text AS payload, e.changed_at, e.attempts,
       w.url, w.method, w.format, w.headers, w.secret, w.previous_secret, w.previous_secret_expires_at,
       w.timeout_seconds, w.max_attempts, w.concurrency, w.live_concurrency, w.failing_since, w.seller_id,
       w.hmac_key, w.hmac_header
FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
WHERE e.id = :event_id AND e.status = 'pending' AND e.leased_until > now()
  AND w.listen_until IS NOT NULL AND (w.listen_only OR w.listen_until > now())
FOR NO KEY UPDATE OF e;

-- name: enqueue_ping
-- A `ping` for a held webhook (webhookTest): pending and due now, for its listener to deliver.
INSERT INTO webhook_events (public_id, webhook_id, event, sequence, payload, payload_hash, changed_at)
VALUES (:public_id, :webhook_id, 'ping', :sequence, :payload, :payload_hash, now())
RETURNING id;
