-- hookql's connections go back to PostgreSQL's default plan caching (app/store/db.py): a
-- statement's generic plan is reused once it costs no more than planning it afresh, which saves
-- the planning of every statement at every execution (claim, enqueue and record: about 13 ms of
-- a delivery's latency at the median on the bench's latency scenario, 2026-12-03). A generic plan
-- is made for the tables as they are then, and kept until their statistics change: a plan made
-- while a table was small (a new installation, a quiet night, the bench's fresh database) can
-- scan it whole once it has grown, until autovacuum analyzes it again (up to a minute). Where
-- such a scan ran once per row — the quadratic stalls auto_explain found on 2026-12-02 — this
-- migration takes the per-row lookup away or pins it to its index:
--
-- 1. webhook_attempts.event_id loses its foreign key. Its check looked up the event once per
--    attempt recorded (285-511 ms per 500 attempts with a plan made while the events were few);
--    recording now inserts an attempt only for an event it holds locked in the same statement
--    (record_attempts in app/store/sql/delivery.sql), which is the check, made once per batch.
--    The key's ON DELETE CASCADE becomes a statement trigger: the events a statement deletes
--    (pruning, or a webhook's delete cascading to its events) take their attempts along, by the
--    attempts' event index, one statement per deleting statement rather than one per event.
--
-- 2. hookql_enqueue_prepare plans its lookups without sequential scans: the last payload hash of
--    each candidate (a correlated lookup per candidate: 2.4 s for 2,000 candidates on a plan made
--    while webhook_entity_state was small), the leased counts and the pending events it
--    supersedes each have an index made for them. tests/integration/test_plans.py makes the plans
--    on small tables, grows the tables, and counts the rows read.

ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_event_id_fkey;

CREATE FUNCTION hookql_delete_event_attempts() RETURNS trigger
    LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    DELETE FROM webhook_attempts a WHERE a.event_id = ANY (ARRAY(SELECT g.id FROM gone_events g));
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_delete_attempts AFTER DELETE ON webhook_events
    REFERENCING OLD TABLE AS gone_events FOR EACH STATEMENT EXECUTE FUNCTION hookql_delete_event_attempts();

ALTER FUNCTION hookql_enqueue_prepare(
    text[], bigint[], bigint[], text[], bigint[], bigint[], text[], bigint[], text[], bytea[], boolean[])
    SET enable_seqscan = off;
