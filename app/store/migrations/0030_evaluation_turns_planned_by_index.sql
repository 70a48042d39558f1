-- The choice of the entities an evaluator claims (claim_due in app/store/sql/pending.sql: owners
-- take turns, migration 0029) is made in this function, planned without sequential scans. As a
-- statement of its own it ran, after five executions, on a generic plan made for the tables as
-- they were then: made while pending_entities was small, it scanned the whole table once per
-- owner — 8,080,446 rows read to claim 500 of 20,000 entities of 200 sellers
-- (tests/integration/test_plans.py). Its loose scan of the owners and each owner's earliest due
-- entities are index scans of pending_entities_owner_due_idx whatever the statistics say.
CREATE FUNCTION hookql_due_entities(max_entities integer)
    RETURNS TABLE (entity_type text, entity_id bigint)
    LANGUAGE sql STABLE SET enable_seqscan = off AS $$
WITH RECURSIVE owners(owner) AS (
    -- the owners with pending entities, one index probe each (a loose scan)
    (SELECT coalesce(seller_id, 0) FROM pending_entities ORDER BY coalesce(seller_id, 0), due_at LIMIT 1)
    UNION ALL
    SELECT (SELECT coalesce(p.seller_id, 0) FROM pending_entities p WHERE coalesce(p.seller_id, 0) > o.owner
            ORDER BY coalesce(p.seller_id, 0), p.due_at LIMIT 1)
    FROM owners o WHERE o.owner IS NOT NULL
), due AS (
    -- each owner's earliest due, unclaimed entities, numbered: its turns
    SELECT d.entity_type, d.entity_id, d.due_at,
           row_number() OVER (PARTITION BY o.owner ORDER BY d.due_at, d.entity_type, d.entity_id) AS turn
    FROM owners o CROSS JOIN LATERAL (
        SELECT p.entity_type, p.entity_id, p.due_at FROM pending_entities p
        WHERE coalesce(p.seller_id, 0) = o.owner AND p.due_at <= now()
          AND (p.claimed_until IS NULL OR p.claimed_until < now())
        ORDER BY p.due_at LIMIT max_entities
    ) d
    WHERE o.owner IS NOT NULL
)
SELECT d.entity_type, d.entity_id FROM due d ORDER BY d.turn, d.due_at LIMIT max_entities
$$;
