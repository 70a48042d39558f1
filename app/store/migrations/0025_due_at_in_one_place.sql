-- The due-time rule in one place: hookql_due_at. A pending entity is evaluated once quiet for
-- `debounce` after its last change, but no later than `max_delay` after its first pending change
-- (SPEC §5.2). Until this migration the rule had two copies that could drift: one inside
-- hookql_ingest (migration 0021), one in Python (app.policy.coalesce.due_at) for the entities the
-- producer leaves pending because they changed while being evaluated. hookql_ingest and
-- finish_enqueue (app/store/sql/enqueue.sql) both call this function; the producer passes the
-- debounce and max delay, not a due time it computed.
--
-- It is IMMUTABLE in truth: timestamptz + interval is only STABLE (a day's length depends on the
-- session's time zone), so the sums are taken in UTC (timestamp + interval is immutable). That
-- equals 0021's `least(last + debounce, first + max_delay)` for every interval without day or month
-- units, which is all hookql passes (make_interval(secs => …)). Being immutable, it is inlined
-- into the statements that call it (a SQL function declared IMMUTABLE over a STABLE expression is
-- not), and may be used in an index expression.
--
-- hookql_ingest is re-created with the same signature and 0021's body, its due time apart.

CREATE FUNCTION hookql_due_at(first_change_at timestamptz, last_change_at timestamptz, debounce interval,
                              max_delay interval)
    RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(last_change_at AT TIME ZONE 'UTC' + debounce, first_change_at AT TIME ZONE 'UTC' + max_delay)
           AT TIME ZONE 'UTC'
$$;

CREATE OR REPLACE FUNCTION hookql_ingest(lock_key bigint, max_changes integer, rules jsonb, debounce interval,
                              max_delay interval)
    RETURNS TABLE (taken integer, next_due_in_s double precision) LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN QUERY SELECT 0, NULL::double precision;
        RETURN;
    END IF;
    RETURN QUERY
    WITH taken AS (
        DELETE FROM changes WHERE id IN (SELECT c.id FROM changes c ORDER BY c.id LIMIT max_changes)
        RETURNING changes.id, changes.entity_type, changes.entity_id, changes.action, changes.seller_id,
                  changes.changed_at
    ), prev AS (
        SELECT p.entity_type, p.entity_id, p.action, p.seller_id, p.first_change_at, p.last_change_at
        FROM pending_entities p
        WHERE (p.entity_type, p.entity_id) IN (SELECT t.entity_type, t.entity_id FROM taken t)
        ORDER BY p.entity_type, p.entity_id FOR UPDATE
    ), steps AS (  -- the pending action first (0 sorts before every change id), then the changes
        SELECT p.entity_type, p.entity_id, 0::bigint AS ord, p.action FROM prev p
        UNION ALL
        SELECT t.entity_type, t.entity_id, t.id, t.action FROM taken t
    ), folded AS (
        SELECT s.entity_type, s.entity_id, hookql_fold(s.action, rules ORDER BY s.ord) AS action
        FROM steps s GROUP BY s.entity_type, s.entity_id
    ), burst AS (
        SELECT t.entity_type, t.entity_id,
               (array_agg(t.changed_at ORDER BY t.id))[1] AS first_change_at,
               max(t.changed_at) AS last_change_at,
               -- the owner the latest change names; a change that names none keeps the pending one
               (array_agg(t.seller_id ORDER BY t.id DESC) FILTER (WHERE t.seller_id IS NOT NULL))[1] AS seller_id
        FROM taken t GROUP BY t.entity_type, t.entity_id
    ), next AS (
        SELECT b.entity_type, b.entity_id, f.action, p.action AS prev_action,
               coalesce(b.seller_id, p.seller_id) AS seller_id,
               CASE WHEN p.action IS NULL THEN b.first_change_at ELSE p.first_change_at END AS first_change_at,
               greatest(b.last_change_at, p.last_change_at) AS last_change_at
        FROM burst b JOIN folded f ON f.entity_type = b.entity_type AND f.entity_id = b.entity_id
        LEFT JOIN prev p ON p.entity_type = b.entity_type AND p.entity_id = b.entity_id
    ), gone AS (  -- folded to nothing (created, then deleted): nothing to say
        DELETE FROM pending_entities pe USING next n
        WHERE n.action IS NULL AND n.prev_action IS NOT NULL
          AND pe.entity_type = n.entity_type AND pe.entity_id = n.entity_id
    ), written AS (  -- a fold into an existing row bumps its version (see lock_for_enqueue)
        INSERT INTO pending_entities AS pe (entity_type, entity_id, action, seller_id, first_change_at,
                                            last_change_at, due_at)
        SELECT n.entity_type, n.entity_id, n.action, n.seller_id, n.first_change_at, n.last_change_at,
               hookql_due_at(n.first_change_at, n.last_change_at, debounce, max_delay)
        FROM next n WHERE n.action IS NOT NULL
        ON CONFLICT (entity_type, entity_id) DO UPDATE SET action = EXCLUDED.action,
            seller_id = coalesce(EXCLUDED.seller_id, pe.seller_id),
            first_change_at = EXCLUDED.first_change_at, last_change_at = EXCLUDED.last_change_at,
            due_at = EXCLUDED.due_at, version = pe.version + 1
        RETURNING pe.due_at
    )
    SELECT (SELECT count(*) FROM taken)::integer,
           extract(epoch FROM (SELECT min(w.due_at) FROM written w) - statement_timestamp())::double precision;
END $$;
