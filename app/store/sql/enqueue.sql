-- Enqueueing events (app.store.enqueue): the producer's and webhookReplay's one path. Set-based
-- (unnest arrays), so a batch costs a fixed number of statements.

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

-- name: reserve_sequences
-- :counts[n] sequence numbers for webhook :webhook_ids[n]; each row is the first of its range.
UPDATE webhooks w SET last_sequence = w.last_sequence + c.n
FROM unnest(:webhook_ids::bigint[], :counts::int[]) c(id, n) WHERE w.id = c.id
RETURNING w.id AS webhook_id, w.last_sequence - c.n + 1 AS first;

-- name: finish_enqueue
-- Its parts write disjoint rows, so they run as one statement (one round trip).
WITH ins AS (
    INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,
                                payload, payload_hash, changed_at, attempts, next_attempt_at, finished_at,
                                leased_until, skip_reason)
    SELECT u.p, u.w, u.t, u.i, u.e, u.s, u.st, u.pl::json, u.h, u.c, u.a, coalesce(u.n, now()),
           CASE WHEN u.f THEN now() END,
           -- leased to this process only while no older event of the pair is leased (one in
           -- flight per (webhook, entity)); otherwise left to a claim. The leases are read once,
           -- through their index (migration 0031), and hashed: a NOT EXISTS per row ran as a
           -- hashed scan of the whole table whenever the statistics counted most events leased.
           CASE WHEN u.l AND (u.t IS NULL OR u.i IS NULL OR (u.w, u.t, u.i) NOT IN (
                    SELECT x.webhook_id, x.entity_type, x.entity_id FROM hookql_live_leases() x
                    WHERE x.entity_type IS NOT NULL AND x.entity_id IS NOT NULL))
                THEN now() + make_interval(secs => :lease_s) END,
           u.sr
    FROM unnest(:public_ids::text[], :webhook_ids::bigint[], :entity_types::text[], :entity_ids::bigint[],
                :events::text[], :sequences::bigint[], :statuses::text[], :payloads::text[],
                :payload_hashes::bytea[], :changed_ats::timestamptz[], :attempts::int[],
                :next_attempt_ats::timestamptz[], :finished::bool[], :leased::bool[], :skip_reasons::text[])
         u(p, w, t, i, e, s, st, pl, h, c, a, n, f, l, sr)
    RETURNING id, public_id, webhook_id, entity_type, entity_id, status, leased_until
), link AS (
    -- Each superseded event to the pending event that replaces it, paired by the caller. A join
    -- to `ins` on the (webhook, entity) key, whose rows the planner cannot count, ran as a
    -- nested loop probing the superseded events once per inserted event: 22,000 inserted
    -- against 3,333 superseded took 6.0 s under the enqueue's locks (auto_explain, peers bench,
    -- 2026-12-02). Matched on the new event's public id, it is a hash join.
    UPDATE webhook_events o SET superseded_by = n.id
    FROM unnest(:superseded_ids::bigint[], :superseding_public_ids::text[]) m(o, p)
    JOIN ins n ON n.public_id = m.p
    WHERE o.id = m.o
), h AS (
    INSERT INTO webhook_entity_state (webhook_id, entity_type, entity_id, last_payload_hash)
    SELECT * FROM unnest(:hash_webhook_ids::bigint[], :hash_types::text[], :hash_ids::bigint[], :hashes::bytea[])
    ON CONFLICT (webhook_id, entity_type, entity_id) DO UPDATE SET last_payload_hash = EXCLUDED.last_payload_hash
), d AS (
    DELETE FROM pending_entities WHERE (entity_type, entity_id) IN
        (SELECT * FROM unnest(:done_types::text[], :done_ids::bigint[]))
), r AS (
    -- What is left of a moved entity is the changes after its claim: an update if its creation
    -- was just enqueued, first changed after what was claimed, due by that and its last change
    -- (hookql_due_at, migration 0025; the row is locked since enqueue_prepare judged it).
    UPDATE pending_entities p SET claimed_until = NULL,
        action = CASE WHEN p.action = 'created' THEN 'updated' ELSE p.action END,
        first_change_at = m.f,
        due_at = hookql_due_at(m.f, p.last_change_at, make_interval(secs => :debounce_s),
                               make_interval(secs => :max_delay_s))
    FROM unnest(:moved_types::text[], :moved_ids::bigint[], :moved_first_change_ats::timestamptz[]) m(t, i, f)
    WHERE p.entity_type = m.t AND p.entity_id = m.i
), wake AS (
    -- dispatchers are woken only when an event is left to a claim
    SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM ins WHERE status = 'pending'
                                         AND leased_until IS NULL LIMIT 1) x
)
SELECT id, public_id FROM ins WHERE leased_until IS NOT NULL
UNION ALL SELECT NULL, NULL FROM wake;
