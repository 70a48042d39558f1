-- The events leased now (being sent, or held by a process until their turn), read through
-- webhook_events_leased_idx whatever the statistics say: the claim (claim_events in
-- app/store/sql/delivery.sql) counts them per webhook and owner, and the enqueue
-- (finish_enqueue in app/store/sql/enqueue.sql) hands an event off only while no older event of
-- its (webhook, entity) is among them. As part of those statements their plan followed the
-- statistics of leased_until, which, taken while the table was young and most of its events
-- leased (a new installation, the bench's cloned databases), counted most rows leased: the claim
-- and the enqueue each scanned the whole table for the thousand or so held — 20-30 ms of a 48 ms
-- claim and of an 88 ms enqueue on the bench (auto_explain, 2026-12-03), and in production a
-- scan of the whole retention per claim (tests/integration/test_plans.py).
CREATE FUNCTION hookql_live_leases()
    RETURNS TABLE (id bigint, webhook_id bigint, entity_type text, entity_id bigint)
    LANGUAGE sql STABLE SET enable_seqscan = off AS $$
SELECT e.id, e.webhook_id, e.entity_type, e.entity_id FROM webhook_events e
WHERE e.leased_until IS NOT NULL AND e.leased_until > now()
$$;
