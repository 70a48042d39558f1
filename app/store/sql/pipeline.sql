-- The engine's statements: folding captured changes into pending entities, claiming them,
-- enqueueing their events, claiming and recording deliveries, pruning. Set-based (unnest
-- arrays), so a batch costs a fixed number of statements.

-- ---- ingest: changes → pending entities -------------------------------------------------------

-- name: ingest
-- One ingest, one statement (migration 0021): lock, take, fold, write.
SELECT taken, next_due_in_s
FROM hookql_ingest(:lock_key, :max_changes, :rules::jsonb, make_interval(secs => :debounce_s),
                   make_interval(secs => :max_delay_s));

-- name: any_changes
SELECT EXISTS (SELECT 1 FROM changes);

-- ---- evaluate: claiming due entities ----------------------------------------------------------

-- name: claim_due
-- An evaluator's claim, in one statement: lease up to :limit due, unclaimed entities, earliest
-- due first (kind 'entity'); the enabled webhooks of their types, in id order (kind 'webhook');
-- and, in one row of kind 'next', the seconds until the next entity this claim left unclaimed
-- is due (NULL: none; the statement's snapshot still shows the claimed ones unclaimed, hence
-- the NOT IN).
WITH claimed AS (
    UPDATE pending_entities p SET claimed_until = now() + make_interval(secs => :lease_s)
    FROM (SELECT entity_type, entity_id FROM pending_entities WHERE due_at <= now()
          AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY due_at LIMIT :limit
          FOR UPDATE SKIP LOCKED) d
    WHERE p.entity_type = d.entity_type AND p.entity_id = d.entity_id
    RETURNING p.entity_type, p.entity_id, p.action, p.seller_id, p.last_change_at, p.version
)
SELECT 'entity' AS kind, entity_type, entity_id, action, seller_id, last_change_at, version,
       NULL::bigint AS id, NULL::text AS query, NULL::text[] AS events, NULL::bool AS skip_identical_payloads,
       NULL::int AS budget_breaches, NULL::text AS filter, NULL::float8 AS due_in_s
FROM claimed
UNION ALL
SELECT * FROM (
    SELECT 'webhook', w.entity_type, NULL::bigint, NULL::text, w.seller_id, NULL::timestamptz, NULL::bigint,
           w.id, w.query, w.events, w.skip_identical_payloads, w.budget_breaches, w.filter, NULL::float8
    FROM webhooks w WHERE w.enabled AND w.entity_type IN (SELECT entity_type FROM claimed) ORDER BY w.id) hooks
UNION ALL
SELECT 'next', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       extract(epoch FROM min(due_at) - now())::float8
FROM pending_entities WHERE (claimed_until IS NULL OR claimed_until < now())
AND (entity_type, entity_id) NOT IN (SELECT entity_type, entity_id FROM claimed);

-- name: next_entity_due_in_s
SELECT extract(epoch FROM min(due_at) - now()) FROM pending_entities
WHERE claimed_until IS NULL OR claimed_until < now();

-- name: release_claims
UPDATE pending_entities SET claimed_until = NULL WHERE (entity_type, entity_id) IN
    (SELECT * FROM unnest(:types::text[], :ids::bigint[]));

-- ---- enqueue --------------------------------------------------------------------------------

-- name: lock_webhooks
SELECT id FROM webhooks WHERE id = ANY(:webhook_ids::bigint[]) ORDER BY id FOR NO KEY UPDATE;

-- name: enqueue_prepare
-- An enqueue's first statement (migration 0022): the claimed entities locked and judged, the
-- webhooks locked and read as a hand-off does, sequences reserved, last hashes read, pending
-- events superseded. Rows of kind 'entity', 'webhook', 'first', 'hash' and 'clock'.
SELECT * FROM hookql_enqueue_prepare(:types::text[], :ids::bigint[], :versions::bigint[], :claimed_actions::text[],
                                     :webhook_ids::bigint[], :c_webhook_ids::bigint[], :c_types::text[],
                                     :c_ids::bigint[], :c_kinds::text[], :c_hashes::bytea[], :c_skips::boolean[]);

-- name: supersede
-- Rows locked in id order, as recording locks them: the two cannot deadlock.
UPDATE webhook_events e SET status = 'superseded', finished_at = now()
FROM (SELECT x.id FROM unnest(:webhook_ids::bigint[], :types::text[], :ids::bigint[]) u(w, t, i)
      JOIN webhook_events x ON x.status = 'pending' AND x.webhook_id = u.w AND x.entity_type = u.t
      AND x.entity_id = u.i ORDER BY x.id FOR NO KEY UPDATE OF x) s
WHERE e.id = s.id AND e.status = 'pending'
RETURNING e.id, e.webhook_id, e.entity_type, e.entity_id, e.attempts, e.next_attempt_at;

-- name: reserve_and_read_hashes
WITH seq AS (
    UPDATE webhooks w SET last_sequence = w.last_sequence + c.n
    FROM unnest(:counted_ids::bigint[], :counts::int[]) c(id, n) WHERE w.id = c.id
    RETURNING w.id, w.last_sequence - c.n + 1 AS first)
SELECT id AS webhook_id, NULL::text AS entity_type, NULL::bigint AS entity_id, first, NULL::bytea AS hash
FROM seq
UNION ALL
SELECT s.webhook_id, s.entity_type, s.entity_id, NULL, s.last_payload_hash FROM webhook_entity_state s
JOIN unnest(:webhook_ids::bigint[], :types::text[], :ids::bigint[]) u(w, t, i)
ON s.webhook_id = u.w AND s.entity_type = u.t AND s.entity_id = u.i;

-- name: finish_enqueue
-- Its parts write disjoint rows, so they run as one statement (one round trip).
WITH ins AS (
    INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,
                                payload, payload_hash, changed_at, attempts, next_attempt_at, finished_at,
                                leased_until, skip_reason)
    SELECT u.p, u.w, u.t, u.i, u.e, u.s, u.st, u.pl::json, u.h, u.c, u.a, coalesce(u.n, now()),
           CASE WHEN u.f THEN now() END,
           -- leased to this process only while no older event of the pair is leased (one in
           -- flight per (webhook, entity)); otherwise left to a claim
           CASE WHEN u.l AND NOT EXISTS (SELECT 1 FROM webhook_events x WHERE x.webhook_id = u.w
                AND x.entity_type = u.t AND x.entity_id = u.i AND x.leased_until > now())
                THEN now() + make_interval(secs => :lease_s) END,
           u.sr
    FROM unnest(:public_ids::text[], :webhook_ids::bigint[], :entity_types::text[], :entity_ids::bigint[],
                :events::text[], :sequences::bigint[], :statuses::text[], :payloads::text[],
                :payload_hashes::bytea[], :changed_ats::timestamptz[], :attempts::int[],
                :next_attempt_ats::timestamptz[], :finished::bool[], :leased::bool[], :skip_reasons::text[])
         u(p, w, t, i, e, s, st, pl, h, c, a, n, f, l, sr)
    RETURNING id, public_id, webhook_id, entity_type, entity_id, status, leased_until
), link AS (
    UPDATE webhook_events o SET superseded_by = n.id FROM ins n
    WHERE o.id = ANY(:superseded_ids::bigint[]) AND n.status = 'pending' AND n.webhook_id = o.webhook_id
    AND n.entity_type = o.entity_type AND n.entity_id = o.entity_id
), h AS (
    INSERT INTO webhook_entity_state (webhook_id, entity_type, entity_id, last_payload_hash)
    SELECT * FROM unnest(:hash_webhook_ids::bigint[], :hash_types::text[], :hash_ids::bigint[], :hashes::bytea[])
    ON CONFLICT (webhook_id, entity_type, entity_id) DO UPDATE SET last_payload_hash = EXCLUDED.last_payload_hash
), d AS (
    DELETE FROM pending_entities WHERE (entity_type, entity_id) IN
        (SELECT * FROM unnest(:done_types::text[], :done_ids::bigint[]))
), r AS (
    -- What is left of a moved entity is the changes after its claim: an update if its creation
    -- was just enqueued, first changed after what was claimed, due by that (coalesce.due_at).
    UPDATE pending_entities p SET claimed_until = NULL,
        action = CASE WHEN p.action = 'created' THEN 'updated' ELSE p.action END,
        first_change_at = m.f, due_at = m.d
    FROM unnest(:moved_types::text[], :moved_ids::bigint[], :moved_first_change_ats::timestamptz[],
                :moved_due_ats::timestamptz[]) m(t, i, f, d)
    WHERE p.entity_type = m.t AND p.entity_id = m.i
), wake AS (
    -- dispatchers are woken only when an event is left to a claim
    SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM ins WHERE status = 'pending'
                                         AND leased_until IS NULL LIMIT 1) x
)
SELECT id, public_id FROM ins WHERE leased_until IS NOT NULL
UNION ALL SELECT NULL, NULL FROM wake;

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

-- ---- delivery: claim, renew, record ---------------------------------------------------------

-- name: claim_lock
SELECT pg_advisory_xact_lock(:lock_key);

-- name: claim_events
WITH leased AS (
    -- attempts in flight, but for this process's attempts that have finished and are not yet
    -- recorded (:finished), which no longer occupy a slot
    SELECT webhook_id, entity_type, entity_id FROM webhook_events
    WHERE leased_until IS NOT NULL AND leased_until > now() AND id <> ALL(:finished::bigint[])
), busy AS (
    SELECT webhook_id, count(*) AS n FROM leased GROUP BY webhook_id
), owner_busy AS (
    -- an owner is a seller, or the operator (seller_id NULL: owner 0, below every bigserial id)
    SELECT coalesce(w.seller_id, 0) AS owner, sum(b.n) AS n
    FROM busy b JOIN webhooks w ON w.id = b.webhook_id GROUP BY 1
), due AS (
    SELECT e.id, e.webhook_id, e.next_attempt_at FROM webhook_events e
    WHERE e.status = 'pending' AND e.next_attempt_at <= now()
      AND (e.leased_until IS NULL OR e.leased_until <= now())
      -- a webhook held by `hookql listen` (listen.sql) is delivered by its listener, not over HTTP
      AND e.webhook_id NOT IN (SELECT id FROM webhooks WHERE listen_until IS NOT NULL
                               AND (listen_only OR listen_until > now()))
      -- one in flight per (webhook, entity); a ping has no entity. NOT IN runs as a hashed
      -- subplan whatever the row estimates (a lease's `> now()` is always misestimated, and a
      -- nested-loop anti-join costs scanned × leased comparisons: seconds under a backlog).
      AND (e.entity_type IS NULL OR e.entity_id IS NULL OR (e.webhook_id, e.entity_type, e.entity_id) NOT IN (
          SELECT webhook_id, entity_type, entity_id FROM leased
          WHERE entity_type IS NOT NULL AND entity_id IS NOT NULL))
    ORDER BY e.next_attempt_at, e.id
    LIMIT :scan_limit
), ranked AS (
    -- lease ahead (:ahead × live concurrency) only for a healthy webhook; a failing one (a URL
    -- being fixed, a receiver down) gets one round at a time, so each retry sees the webhook's
    -- configuration afresh
    SELECT d.id, d.next_attempt_at, coalesce(w.seller_id, 0) AS owner, coalesce(b.n, 0) AS busy,
           w.live_concurrency * CASE WHEN w.failing_since IS NULL THEN :ahead ELSE 1 END
           - coalesce(b.n, 0) AS free,
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS rn
    FROM due d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
    LEFT JOIN busy b ON b.webhook_id = d.webhook_id
), shared AS (
    -- :owner_max_held: events one owner may hold leased, over all its webhooks. They take turns,
    -- the one holding fewest first, so a webhook with little leased gets in ahead of a busy sibling.
    SELECT r.id, :owner_max_held - coalesce(o.n, 0) AS free,
           row_number() OVER (PARTITION BY r.owner ORDER BY r.busy + r.rn, r.next_attempt_at, r.id) AS rn
    FROM ranked r LEFT JOIN owner_busy o ON o.owner = r.owner
    WHERE r.rn <= r.free
), chosen AS (
    -- owners take turns for the room this process has (:limit)
    SELECT id FROM shared WHERE rn <= free ORDER BY rn, id LIMIT :limit
)
UPDATE webhook_events e
SET leased_until = now() + make_interval(secs => :lease_s)
FROM webhooks w
-- looked up by primary key (an array, not a join the planner may turn into a scan of every
-- pending event). status is checked again on the row as it is when locked: an event superseded
-- by an enqueue that committed while this claim waited for the row must not be sent
WHERE e.id = ANY (ARRAY(SELECT id FROM chosen)) AND w.id = e.webhook_id AND e.status = 'pending'
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
-- not): both the attempts and the outcomes read the lock's result, so it is taken before either.
-- A webhook deleted before the lock took its events along, and its attempts are dropped.
WITH hooks AS (
    SELECT id FROM webhooks WHERE id = ANY(:webhook_ids::bigint[]) ORDER BY id FOR KEY SHARE
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
    WHERE u.webhook_id IN (SELECT id FROM hooks) AND EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = u.event_id)
), outcomes AS (
    -- A status applies only while the event is still pending (not cancelled or superseded
    -- meanwhile). Rows are locked in id order, as enqueueing's supersede locks them: the two
    -- cannot deadlock.
    UPDATE webhook_events e SET attempts = e.attempts + 1, leased_until = NULL,
        status = CASE WHEN e.status = 'pending' THEN u.s ELSE e.status END,
        next_attempt_at = CASE WHEN e.status = 'pending' THEN u.n ELSE e.next_attempt_at END,
        finished_at = CASE WHEN e.status = 'pending' AND u.s <> 'pending' THEN now() ELSE e.finished_at END
    FROM (SELECT x.id, v.s, v.n
          FROM unnest(:event_ids::bigint[], :statuses::text[], :next_attempt_ats::timestamptz[]) v(id, s, n)
          JOIN webhook_events x ON x.id = v.id AND x.webhook_id IN (SELECT id FROM hooks)
          ORDER BY x.id FOR NO KEY UPDATE OF x) u
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

-- ---- housekeeping ---------------------------------------------------------------------------

-- name: prune
-- Finished events past retention: delivered, skipped and superseded ones. Failed and cancelled
-- events stay for a person to look at.
DELETE FROM webhook_events WHERE id IN (
    SELECT id FROM webhook_events
    WHERE status IN ('delivered', 'skipped', 'superseded') AND finished_at < now() - make_interval(secs => :retention_s)
    LIMIT :limit);
