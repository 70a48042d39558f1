-- An enqueue's first half in one call (issue #14: statements per event, and one round trip less on
-- the path from a change to its delivery). lock_for_enqueue and reserve_and_supersede were two
-- statements with the producer deciding in between which claimed entities may be sent; the
-- decision is made here, and the caller reads it from the answer rather than making it again.
--
-- In one transaction of the caller's, with the events then inserted by finish_enqueue:
--   1. the claimed entities' pending rows, locked in key order (as hookql_ingest locks them), each
--      with its verdict against the version and action the evaluator claimed:
--        'done'  unchanged since the claim: evaluated, removed by finish_enqueue;
--        'moved' changed meanwhile, no delete involved: its payload was read after the claim, so it
--                is at least as new as what was claimed — sent now, and the entity stays pending
--                for the newer changes (under load most evaluations would otherwise be thrown
--                away and done again);
--        'held'  changed meanwhile with a delete on either side: a payload read around a delete or
--                a re-creation may not match its event name, so nothing is sent and the entity is
--                simply evaluated again;
--      an entity whose row is gone (its changes folded to nothing) has no row and nothing is sent;
--   2. the webhooks, locked in id order (as every transaction that writes webhooks and their
--      events locks them), as a hand-off reads them, with the events leased of each and of its
--      owner;
--   3. in a statement of its own, so that its snapshot sees every hash a recorder reset before the
--      webhook locks: reserve one sequence number per sendable candidate that is not filtered
--      (kind 'first': the first of each webhook's range, `reserved` its length), read the last
--      payload hash of each sendable payload's (webhook, entity) (kind 'hash'), and supersede the
--      pending event of each such pair whose payload is not skipped as identical (kind 'clock':
--      the retry clock it hands on). The skip rule is app.store.pipeline.is_skipped's.
-- Candidates are one per (webhook, entity) the evaluation produced: c_kinds 'payload', 'breach'
-- (the evaluation budget was exceeded: it takes a sequence number, recorded failed) or 'filtered'
-- (the webhook's filter did not match: no sequence number, no supersede, hash left alone).

CREATE FUNCTION hookql_enqueue_prepare(
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

    -- Events are locked in id order, as recording locks them: the two cannot deadlock.
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
        SELECT c.w, c.t, c.i, c.h, c.s, st.last_payload_hash AS prev
        FROM cands c
        LEFT JOIN webhook_entity_state st ON st.webhook_id = c.w AND st.entity_type = c.t AND st.entity_id = c.i
        WHERE c.k = 'payload'
    ), sup AS (
        UPDATE webhook_events e SET status = 'superseded', finished_at = now()
        FROM (SELECT x.id FROM keys u
              JOIN webhook_events x ON x.status = 'pending' AND x.webhook_id = u.w AND x.entity_type = u.t
              AND x.entity_id = u.i
              WHERE NOT (u.s AND u.prev IS NOT DISTINCT FROM u.h)
              ORDER BY x.id FOR NO KEY UPDATE OF x) s
        WHERE e.id = s.id AND e.status = 'pending'
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
END $$;
