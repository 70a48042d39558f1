-- An ingest in one call (issue #14: ≤ 0.1 statements per delivered event at a batch of 100).
-- Folding captured changes into pending_entities took five statements — BEGIN, the ingest lock,
-- taking the changes, writing the folds, COMMIT — with the fold itself in Python between them.
-- hookql_ingest does the same in one top-level statement, run outside any explicit transaction:
--
--   1. pg_try_advisory_xact_lock(lock_key): one ingester at a time keeps folding in commit order;
--      a second one returns at once and folds nothing.
--   2. one statement takes up to max_changes changes (oldest first), locks their entities'
--      pending rows in key order (as lock_for_enqueue locks them), folds each entity's pending
--      action and its changes in commit order, and upserts or deletes the pending rows.
--
-- It is PL/pgSQL, not one SQL statement, for the snapshot: in a function each statement takes a
-- fresh snapshot, so step 2 sees every fold an ingester that held the lock committed before step
-- 1 took it. In a single statement the snapshot would predate the lock, and a fold committed in
-- between would be invisible — the entity then folded as if nothing were pending.
--
-- The coalesce rule stays policy (app/policy/coalesce.py): the caller passes it as `rules`, a JSON
-- object from 'previous+next' to the folded action (JSON null: the two cancel out), built from
-- coalesce's own table. hookql_fold applies it in commit order; nothing pending (NULL) takes the
-- next action as it is. The due time is coalesce.due_at's: quiet for `debounce`, but no later than
-- `max_delay` after the first pending change.
--
-- Returns the number of changes taken and, when any pending row was written, the seconds from
-- the statement's start until the earliest due time written (NULL: nothing written or nothing
-- taken).

CREATE FUNCTION hookql_fold_step(state text, action text, rules jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN state IS NULL THEN action ELSE rules ->> (state || '+' || action) END
$$;

CREATE AGGREGATE hookql_fold(text, jsonb) (SFUNC = hookql_fold_step, STYPE = text);

CREATE FUNCTION hookql_ingest(lock_key bigint, max_changes integer, rules jsonb, debounce interval,
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
               least(n.last_change_at + debounce, n.first_change_at + max_delay)
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
