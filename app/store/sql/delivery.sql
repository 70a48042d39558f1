-- Delivery (app.store.delivery): claiming due events, renewing and releasing leases, recording
-- attempts and webhook health, pruning finished events.

-- name: lock_webhooks
SELECT id FROM webhooks WHERE id = ANY(:webhook_ids::bigint[]) ORDER BY id FOR NO KEY UPDATE;

-- name: claim_lock
-- The claim that follows, in the same transaction, is planned afresh (custom plans are otherwise
-- left to PostgreSQL: app/store/db.py). Its plan rests on how many events are due and leased,
-- which swing from none to thousands within seconds; a generic plan made for a few ran the
-- per-owner counts once per due event (4,134 × 815 rows, auto_explain on the peers bench,
-- 2026-12-03). A claim leases up to hundreds of events: its planning is small beside them.
SELECT pg_advisory_xact_lock(:lock_key), set_config('plan_cache_mode', 'force_custom_plan', true);

-- name: claim_events
-- Every webhook with due events and room for more is looked at, however many events another
-- has due: each one's earliest due events, up to its room and its equal part of :scan_limit,
-- rather than the earliest :scan_limit due events of all, which one seller's backlog (a
-- receiver down for a day) would fill, holding back every other owner's retries until it
-- drained (tests/hostile/test_backlog_hostile.py).
WITH RECURSIVE leases AS (
    -- through the leased events' index, whatever the statistics say (migration 0031)
    SELECT id, webhook_id, entity_type, entity_id FROM hookql_live_leases()
), leased AS (
    -- attempts in flight, but for this process's attempts that have finished and are not yet
    -- recorded (:finished), which no longer occupy a slot
    SELECT webhook_id, entity_type, entity_id FROM leases WHERE id <> ALL(:finished::bigint[])
), busy AS (
    SELECT webhook_id, count(*) AS n FROM leased GROUP BY webhook_id
), owner_busy AS (
    -- every lease counts against its owner's held events, finished attempts waiting for the
    -- recorder too: they are held until recorded, and a recorder that falls behind must not let
    -- one owner fill a process's held events. An owner is a seller, or the operator (seller_id
    -- NULL: owner 0, below every bigserial id).
    SELECT coalesce(w.seller_id, 0) AS owner, count(*) AS n
    FROM leases l JOIN webhooks w ON w.id = l.webhook_id GROUP BY 1
), pending_hooks(id) AS (
    -- the webhooks with pending events, one index probe each (a loose scan of
    -- webhook_events_due_by_webhook_idx, whose order the ORDER BY spells out so that no other
    -- index, with every finished event in it, is walked instead), however many events each has
    (SELECT webhook_id FROM webhook_events WHERE status = 'pending'
     ORDER BY webhook_id, next_attempt_at, id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.webhook_id FROM webhook_events e WHERE e.status = 'pending' AND e.webhook_id > p.id
            ORDER BY e.webhook_id, e.next_attempt_at, e.id LIMIT 1)
    FROM pending_hooks p WHERE p.id IS NOT NULL
), room AS (
    -- lease ahead (:ahead × live concurrency) only for a healthy webhook; a failing one (a URL
    -- being fixed, a receiver down) gets one round at a time, so each retry sees the webhook's
    -- configuration afresh. A webhook held by `hookql listen` (listen.sql) is delivered by its
    -- listener, not over HTTP.
    SELECT w.id, coalesce(w.seller_id, 0) AS owner, coalesce(b.n, 0) AS busy,
           least(:limit, w.live_concurrency * CASE WHEN w.failing_since IS NULL THEN :ahead ELSE 1 END
                         - coalesce(b.n, 0)) AS free
    FROM pending_hooks p JOIN webhooks w ON w.id = p.id AND w.enabled
    LEFT JOIN busy b ON b.webhook_id = w.id
    WHERE w.listen_until IS NULL OR NOT (w.listen_only OR w.listen_until > now())
), open AS (
    -- :scan_limit due events are looked at, shared equally among the webhooks with room whose
    -- owner may hold more
    SELECT r.*, greatest(1, :scan_limit / count(*) OVER ()) AS scan
    FROM room r LEFT JOIN owner_busy o ON o.owner = r.owner
    WHERE r.free > 0 AND coalesce(o.n, 0) < :owner_max_held
), due AS (
    -- each webhook's earliest due events, as many as it has room for, in order
    -- (webhook_events_due_by_webhook_idx)
    SELECT d.id, d.next_attempt_at, r.owner, r.busy,
           row_number() OVER (PARTITION BY r.id ORDER BY d.next_attempt_at, d.id) AS rn
    FROM open r CROSS JOIN LATERAL (
        SELECT e.id, e.next_attempt_at FROM webhook_events e
        WHERE e.webhook_id = r.id AND e.status = 'pending' AND e.next_attempt_at <= now()
          AND (e.leased_until IS NULL OR e.leased_until <= now())
          -- one in flight per (webhook, entity); a ping has no entity. NOT IN runs as a hashed
          -- subplan whatever the row estimates (a lease's `> now()` is always misestimated, and a
          -- nested-loop anti-join costs scanned × leased comparisons: seconds under a backlog).
          AND (e.entity_type IS NULL OR e.entity_id IS NULL OR (e.webhook_id, e.entity_type, e.entity_id) NOT IN (
              SELECT webhook_id, entity_type, entity_id FROM leased
              WHERE entity_type IS NOT NULL AND entity_id IS NOT NULL))
        ORDER BY e.next_attempt_at, e.id
        LIMIT least(r.free, r.scan)
    ) d
), shared AS (
    -- :owner_max_held: events one owner may hold leased, over all its webhooks. They take turns,
    -- the one holding fewest first, so a webhook with little leased gets in ahead of a busy sibling.
    SELECT d.id, :owner_max_held - coalesce(o.n, 0) AS free,
           row_number() OVER (PARTITION BY d.owner ORDER BY d.busy + d.rn, d.next_attempt_at, d.id) AS rn
    FROM due d LEFT JOIN owner_busy o ON o.owner = d.owner
), chosen AS (
    -- owners take turns for the room this process has (:limit)
    SELECT id FROM shared WHERE rn <= free ORDER BY rn, id LIMIT :limit
), locked AS (
    -- locked in id order, as enqueueing's supersede and recording lock events: the three cannot
    -- deadlock, whatever order the update's plan would meet the rows in
    SELECT x.id FROM webhook_events x WHERE x.id = ANY (ARRAY(SELECT id FROM chosen)) ORDER BY x.id
    FOR NO KEY UPDATE OF x
)
UPDATE webhook_events e
SET leased_until = now() + make_interval(secs => :lease_s)
FROM webhooks w
-- looked up by primary key, each array computed once (joined instead, a plan made for a few due
-- events scanned every due event and locked the chosen ones again for each: 1.0-5.5 s a claim,
-- auto_explain on the peers bench, 2026-12-03). status is checked again on the row as it is when
-- locked: an event superseded by an enqueue that committed while this claim waited for the row
-- must not be sent
WHERE e.id = ANY (ARRAY(SELECT id FROM locked)) AND w.id = e.webhook_id AND e.status = 'pending'
RETURNING e.id, e.public_id, e.webhook_id, e.entity_type, e.entity_id, e.event, e.sequence,
          e.payload::text AS payload, e.changed_at, e.attempts,
          w.url, w.method, w.format, w.headers, w.secret, w.previous_secret, w.previous_secret_expires_at,
          w.timeout_seconds, w.max_attempts, w.concurrency, w.live_concurrency, w.failing_since, w.seller_id,
          w.hmac_key, w.hmac_header;

-- name: renew_leases
-- Rows being recorded right now are skipped (their lease is about to go), not waited for.
WITH mine AS (
    SELECT id FROM webhook_events WHERE id = ANY(:event_ids::bigint[]) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED
), renewed AS (
    UPDATE webhook_events e SET leased_until = now() + make_interval(secs => :lease_s)
    FROM mine, webhooks w WHERE e.id = mine.id AND w.id = e.webhook_id AND w.enabled
    AND e.status = 'pending' AND e.leased_until > now() RETURNING e.id
)
SELECT mine.id FROM mine WHERE mine.id NOT IN (SELECT id FROM renewed)
UNION ALL
SELECT h.id FROM unnest(:event_ids::bigint[]) h(id)
WHERE NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = h.id);

-- name: next_event_due_in_s
SELECT extract(epoch FROM min(e.next_attempt_at) - now()) FROM webhook_events e
JOIN webhooks w ON w.id = e.webhook_id AND w.enabled
    AND NOT coalesce(w.listen_only OR w.listen_until > now(), false)
WHERE e.status = 'pending' AND (e.leased_until IS NULL OR e.leased_until <= now());

-- name: record_attempts
-- One statement, no transaction of its own: a batch of outcomes costs one round trip. Webhook
-- rows are KEY SHARE locked first (a webhook delete waits; enqueueing, FOR NO KEY UPDATE, does
-- not), then the events, in id order, as enqueueing's supersede locks them: the two cannot
-- deadlock. An event deleted before its lock (with its webhook, or pruned) is not locked, and
-- neither its attempt nor its outcome is recorded: attempts have no foreign key to their event
-- (migration 0027), this is their check, made once per batch rather than once per attempt.
WITH hooks AS (
    SELECT id FROM webhooks WHERE id = ANY(:webhook_ids::bigint[]) ORDER BY id FOR KEY SHARE
), locked AS (
    SELECT x.id, v.s, v.n
    FROM unnest(:event_ids::bigint[], :statuses::text[], :next_attempt_ats::timestamptz[]) v(id, s, n)
    JOIN webhook_events x ON x.id = v.id AND x.webhook_id IN (SELECT id FROM hooks)
    ORDER BY x.id FOR NO KEY UPDATE OF x
), attempts AS (
    -- The request columns arrive masked (app.policy.masking; migration 0013).
    INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code,
                                  response_headers, response_body, error,
                                  request_method, request_url, request_headers, request_body)
    SELECT u.* FROM unnest(:attempt_event_ids::bigint[], :attempt_webhook_ids::bigint[], :attempted_ats::timestamptz[],
                           :durations_ms::int[], :status_codes::int[], :response_headers::jsonb[],
                           :response_bodies::text[], :errors::text[], :request_methods::text[],
                           :request_urls::text[], :request_headers::jsonb[], :request_bodies::bytea[])
        u(event_id, webhook_id, attempted_at, duration_ms, status_code, response_headers, response_body, error,
          request_method, request_url, request_headers, request_body)
    WHERE u.event_id IN (SELECT id FROM locked)
), outcomes AS (
    -- A status applies only while the event is still pending (not cancelled or superseded meanwhile).
    UPDATE webhook_events e SET attempts = e.attempts + 1, leased_until = NULL,
        status = CASE WHEN e.status = 'pending' THEN u.s ELSE e.status END,
        next_attempt_at = CASE WHEN e.status = 'pending' THEN u.n ELSE e.next_attempt_at END,
        finished_at = CASE WHEN e.status = 'pending' AND u.s <> 'pending' THEN now() ELSE e.finished_at END
    FROM locked u
    WHERE e.id = u.id
)
-- Claimers are woken only when other events of these webhooks are claimable now. The statement's
-- snapshot shows the events recorded here still leased: they are not among them.
SELECT pg_notify(:channel, '') WHERE EXISTS (
    SELECT 1 FROM webhook_events e
    WHERE e.webhook_id = ANY(:webhook_ids::bigint[]) AND e.status = 'pending' AND e.next_attempt_at <= now()
    AND (e.leased_until IS NULL OR e.leased_until <= now()) AND e.id <> ALL(:event_ids::bigint[]));

-- name: record_webhook_health
UPDATE webhooks w SET
    live_concurrency = CASE WHEN u.limited > 0 THEN greatest(1, w.live_concurrency / 2)
        ELSE least(w.concurrency, w.live_concurrency + u.ok) END,
    failing_since = CASE WHEN u.ok > 0 THEN NULL
        WHEN u.failed > 0 THEN coalesce(w.failing_since, now()) ELSE w.failing_since END,
    enabled = w.enabled AND u.gone = 0 AND NOT (u.ok = 0 AND u.failed > 0
        AND coalesce(w.failing_since, now()) <= now() - make_interval(secs => :disable_after_s)),
    disabled_reason = CASE WHEN u.gone > 0 THEN 'receiver answered 410 Gone'
        WHEN u.ok = 0 AND u.failed > 0
             AND coalesce(w.failing_since, now()) <= now() - make_interval(secs => :disable_after_s)
        THEN :failing_reason::text ELSE w.disabled_reason END
FROM unnest(:webhook_ids::bigint[], :delivered::int[], :rate_limited::int[], :failed::int[], :gone::int[])
    u(id, ok, limited, failed, gone)
WHERE w.id = u.id
RETURNING w.id, w.enabled, w.live_concurrency;

-- name: forget_payload_hashes
-- The receiver never got these states: the next change is sent, not skipped.
UPDATE webhook_entity_state s SET last_payload_hash = NULL
FROM unnest(:webhook_ids::bigint[], :types::text[], :ids::bigint[]) u(w, t, i)
WHERE s.webhook_id = u.w AND s.entity_type = u.t AND s.entity_id = u.i;

-- name: release_leases
UPDATE webhook_events SET leased_until = NULL WHERE id = ANY(:event_ids::bigint[]);

-- name: prune
-- Finished events past retention: delivered, skipped and superseded ones. Failed and cancelled
-- events stay for a person to look at.
DELETE FROM webhook_events WHERE id IN (
    SELECT id FROM webhook_events
    WHERE status IN ('delivered', 'skipped', 'superseded') AND finished_at < now() - make_interval(secs => :retention_s)
    LIMIT :limit);
