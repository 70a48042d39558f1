-- hookql_enqueue_prepare (migration 0022) re-created with the same signature and answer; only
-- how two of its lookups are planned changes.
--
-- Each sendable payload's last hash (to skip an identical payload) and pending event (to
-- supersede) are found by its (webhook, entity) key. 0022 joined the candidates to
-- webhook_entity_state and webhook_events and left the join's shape to the planner. On
-- statistics taken while few events were pending (a quiet night, a new installation, the bench's
-- freshly cloned database; autovacuum takes up to a minute to analyze again) the planner judged
-- the pending events about one row and scanned all of them once per candidate — a nested loop
-- whose inner side is not the unique (webhook, entity) index, which ties on cost with the due
-- index (both are partial on status = 'pending'). 2,000 candidates against 2,200 pending events
-- read 4.4 million rows and held the claimed entities, the webhooks and the events locked for
-- 1.0-15.9 s per enqueue (auto_explain on the bench's peers workload, 2026-12-02), while every
-- ingest, claim and recording waited on those locks: deliveries stopped for seconds at a time.
--
-- Now the last hash is a correlated lookup per candidate (on the table's only index, its primary
-- key), and the pending events are joined to the candidates with nested loops disabled for that
-- one statement: a hash join reads each pending event of the batch's webhooks and entities at
-- most once, whatever the statistics say. The events found are locked in id order and superseded
-- by primary key, as a claim leases events. tests/integration/test_enqueue.py reproduces the
-- statistics and counts the rows read.

CREATE OR REPLACE FUNCTION hookql_enqueue_prepare(
    types text[], ids bigint[], versions bigint[], claimed_actions text[], webhook_ids bigint[],
    c_webhook_ids bigint[], c_types text[], c_ids bigint[], c_kinds text[], c_hashes bytea[], c_skips boolean[])
    RETURNS TABLE (
        kind text, entity_type text, entity_id bigint, verdict text, last_change_at timestamptz,
        id bigint, enabled boolean, url text, method text, format text, headers jsonb, secret text,
        previous_secret text, previous_secret_expires_at timestamptz, timeout_seconds integer,
        max_attempts integer, concurrency integer, live_concurrency integer, failing_since timestamptz,
        seller_id bigint, hmac_key text, hmac_header text, leased bigint, owner_leased bigint,
        webhook_id bigint, first bigint, reserved integer, hash bytea, event_id bigint, attempts integer,
        next_attempt_at timestamptz)
    LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cur_types text[];
    cur_ids bigint[];
    cur_verdicts text[];
    cur_lasts timestamptz[];
    nestloop text;
BEGIN
    SELECT coalesce(array_agg(c.entity_type ORDER BY c.entity_type, c.entity_id), '{}'),
           coalesce(array_agg(c.entity_id ORDER BY c.entity_type, c.entity_id), '{}'),
           coalesce(array_agg(CASE WHEN c.version = u.v THEN 'done'
                                   WHEN u.a <> 'deleted' AND c.action <> 'deleted' THEN 'moved'
                                   ELSE 'held' END ORDER BY c.entity_type, c.entity_id), '{}'),
           coalesce(array_agg(c.last_change_at ORDER BY c.entity_type, c.entity_id), '{}')
    INTO cur_types, cur_ids, cur_verdicts, cur_lasts
    FROM (SELECT p.entity_type, p.entity_id, p.version, p.action, p.last_change_at FROM pending_entities p
          WHERE (p.entity_type, p.entity_id) IN (SELECT * FROM unnest(types, ids))
          ORDER BY p.entity_type, p.entity_id FOR UPDATE) c
    JOIN unnest(types, ids, versions, claimed_actions) u(t, i, v, a) ON u.t = c.entity_type AND u.i = c.entity_id;

    RETURN QUERY
    SELECT 'entity', u.t, u.i, u.v, u.l,
           NULL::bigint, NULL::boolean, NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text,
           NULL::timestamptz, NULL::integer, NULL::integer, NULL::integer, NULL::integer, NULL::timestamptz,
           NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::bigint,
           NULL::bigint, NULL::bigint, NULL::integer, NULL::bytea, NULL::bigint, NULL::integer, NULL::timestamptz
    FROM unnest(cur_types, cur_ids, cur_verdicts, cur_lasts) u(t, i, v, l);

    -- `enabled` here is "may be sent over HTTP": a webhook held by `hookql listen` (listen.sql) is not.
    RETURN QUERY
    WITH w AS (
        SELECT * FROM webhooks x WHERE x.id = ANY(webhook_ids) ORDER BY x.id FOR NO KEY UPDATE
    ), owners AS MATERIALIZED (
        SELECT coalesce(o.seller_id, 0) AS owner, count(*) AS n
        FROM webhooks o JOIN webhook_events e ON e.webhook_id = o.id
        AND e.leased_until IS NOT NULL AND e.leased_until > now()
        WHERE coalesce(o.seller_id, 0) IN (SELECT coalesce(w.seller_id, 0) FROM w) GROUP BY 1)
    SELECT 'webhook', NULL::text, NULL::bigint, NULL::text, NULL::timestamptz,
           w.id, w.enabled AND NOT coalesce(w.listen_only OR w.listen_until > now(), false),
           w.url, w.method, w.format, w.headers, w.secret, w.previous_secret, w.previous_secret_expires_at,
           w.timeout_seconds, w.max_attempts, w.concurrency, w.live_concurrency, w.failing_since, w.seller_id,
           w.hmac_key, w.hmac_header,
           (SELECT count(*) FROM webhook_events e WHERE e.webhook_id = w.id AND e.leased_until > now()),
           coalesce(owners.n, 0),
           NULL::bigint, NULL::bigint, NULL::integer, NULL::bytea, NULL::bigint, NULL::integer, NULL::timestamptz
    FROM w LEFT JOIN owners ON owners.owner = coalesce(w.seller_id, 0);

    -- Events are locked in id order, as recording locks them: the two cannot deadlock. The pending
    -- events are joined to the candidates without a nested loop (see the header), and the setting
    -- is put back for the rest of the caller's transaction.
    nestloop := current_setting('enable_nestloop');
    PERFORM set_config('enable_nestloop', 'off', true);
    RETURN QUERY
    WITH sendable AS (
        SELECT u.t, u.i FROM unnest(cur_types, cur_ids, cur_verdicts) u(t, i, v) WHERE u.v IN ('done', 'moved')
    ), cands AS (
        SELECT c.w, c.t, c.i, c.k, c.h, c.s
        FROM unnest(c_webhook_ids, c_types, c_ids, c_kinds, c_hashes, c_skips) c(w, t, i, k, h, s)
        JOIN sendable ON sendable.t = c.t AND sendable.i = c.i
    ), counts AS (
        SELECT c.w, count(*)::integer AS n FROM cands c WHERE c.k <> 'filtered' GROUP BY c.w
    ), seq AS (
        UPDATE webhooks x SET last_sequence = x.last_sequence + counts.n
        FROM counts WHERE x.id = counts.w
        RETURNING x.id, x.last_sequence - counts.n + 1 AS first, counts.n
    ), keys AS (
        SELECT c.w, c.t, c.i, c.h, c.s,
               (SELECT st.last_payload_hash FROM webhook_entity_state st
                WHERE st.webhook_id = c.w AND st.entity_type = c.t AND st.entity_id = c.i) AS prev
        FROM cands c
        WHERE c.k = 'payload'
    ), sup AS (
        UPDATE webhook_events e SET status = 'superseded', finished_at = now()
        WHERE e.id = ANY (ARRAY(
            SELECT x.id FROM keys u
            JOIN webhook_events x ON x.status = 'pending' AND x.webhook_id = u.w AND x.entity_type = u.t
            AND x.entity_id = u.i
            -- (implied by the join; they let a scan of the events keep to this batch's webhooks and entities)
            AND x.webhook_id = ANY(webhook_ids) AND x.entity_id = ANY(cur_ids)
            WHERE NOT (u.s AND u.prev IS NOT DISTINCT FROM u.h)
            ORDER BY x.id FOR NO KEY UPDATE OF x))
        AND e.status = 'pending'
        RETURNING e.id, e.webhook_id, e.entity_type, e.entity_id, e.attempts, e.next_attempt_at
    )
    SELECT 'first', NULL::text, NULL::bigint, NULL::text, NULL::timestamptz,
           NULL::bigint, NULL::boolean, NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text,
           NULL::timestamptz, NULL::integer, NULL::integer, NULL::integer, NULL::integer, NULL::timestamptz,
           NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::bigint,
           seq.id, seq.first, seq.n, NULL::bytea, NULL::bigint, NULL::integer, NULL::timestamptz
    FROM seq
    UNION ALL
    SELECT 'hash', keys.t, keys.i, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL,
           keys.w, NULL, NULL, keys.prev, NULL, NULL, NULL
    FROM keys WHERE keys.prev IS NOT NULL
    UNION ALL
    SELECT 'clock', sup.entity_type, sup.entity_id, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL,
           sup.webhook_id, NULL, NULL, NULL, sup.id, sup.attempts, sup.next_attempt_at
    FROM sup;
    PERFORM set_config('enable_nestloop', nestloop, true);
END $$;
