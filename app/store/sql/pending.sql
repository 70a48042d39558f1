-- Pending entities (app.store.pending): folding captured changes in, claiming the due ones.

-- name: ingest
-- One ingest, one statement (migration 0021): lock, take, fold, write.
SELECT taken, next_due_in_s
FROM hookql_ingest(:lock_key, :max_changes, :rules::jsonb, make_interval(secs => :debounce_s),
                   make_interval(secs => :max_delay_s));

-- name: any_changes
SELECT EXISTS (SELECT 1 FROM changes);

-- name: claim_due
-- An evaluator's claim, in one statement: lease up to :limit due, unclaimed entities (kind
-- 'entity'); the enabled webhooks of their types, in id order (kind 'webhook'); and, in one row
-- of kind 'next', the seconds until the next entity this claim left unclaimed is due (NULL: none;
-- the statement's snapshot still shows the claimed ones unclaimed, hence the NOT IN), with how
-- many owners (sellers, and the operator) have enabled webhooks of any type: delivery's pacing
-- shares its recording batch among them (app.policy.pacing).
--
-- The entities' owners — their sellers; 0 for an entity of none — take turns: each owner's
-- earliest due entity first, then each one's second, and so on, so that one seller's bulk change
-- (an import of tens of thousands of rows) does not queue every other seller's changes behind
-- it (tests/hostile/test_bulk_change_hostile.py). Within an owner, the earliest due comes first.
-- hookql_due_entities (migration 0030) chooses them, planned without sequential scans. The
-- owners in :skip_owners are passed over (their turns go unused): the evaluator's background
-- batches are still evaluating their entities (app.engine.producer, MAX_STRAGGLERS).
WITH claimable AS (
    SELECT entity_type, entity_id FROM hookql_due_entities(:limit)
), chosen AS (
    -- locked, skipping what another evaluator is claiming; the claim is checked again on the
    -- row as it is when locked
    SELECT p.entity_type, p.entity_id FROM pending_entities p
    JOIN claimable c ON p.entity_type = c.entity_type AND p.entity_id = c.entity_id
    WHERE (p.claimed_until IS NULL OR p.claimed_until < now())
      AND coalesce(p.seller_id, 0) <> ALL(:skip_owners::bigint[])
    FOR UPDATE OF p SKIP LOCKED
), claimed AS (
    UPDATE pending_entities p SET claimed_until = now() + make_interval(secs => :lease_s)
    FROM chosen d
    WHERE p.entity_type = d.entity_type AND p.entity_id = d.entity_id
    RETURNING p.entity_type, p.entity_id, p.action, p.seller_id, p.last_change_at, p.version
)
SELECT 'entity' AS kind, entity_type, entity_id, action, seller_id, last_change_at, version,
       NULL::bigint AS id, NULL::text AS query, NULL::text[] AS events, NULL::bool AS skip_identical_payloads,
       NULL::int AS budget_breaches, NULL::text AS filter, NULL::float8 AS due_in_s, NULL::bigint AS owners
FROM claimed
UNION ALL
SELECT * FROM (
    SELECT 'webhook', w.entity_type, NULL::bigint, NULL::text, w.seller_id, NULL::timestamptz, NULL::bigint,
           w.id, w.query, w.events, w.skip_identical_payloads, w.budget_breaches, w.filter, NULL::float8,
           NULL::bigint
    FROM webhooks w WHERE w.enabled AND w.entity_type IN (SELECT entity_type FROM claimed) ORDER BY w.id) hooks
UNION ALL
SELECT 'next', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       extract(epoch FROM min(due_at) - now())::float8,
       (SELECT count(DISTINCT coalesce(seller_id, 0)) FROM webhooks WHERE enabled)
FROM pending_entities WHERE (claimed_until IS NULL OR claimed_until < now())
AND (entity_type, entity_id) NOT IN (SELECT entity_type, entity_id FROM claimed);

-- name: next_entity_due_in_s
SELECT extract(epoch FROM min(due_at) - now()) FROM pending_entities
WHERE claimed_until IS NULL OR claimed_until < now();

-- name: release_claims
UPDATE pending_entities SET claimed_until = NULL WHERE (entity_type, entity_id) IN
    (SELECT * FROM unnest(:types::text[], :ids::bigint[]));
