-- An evaluator's claim lets the entities' owners (their sellers) take turns, each owner's
-- earliest due entity first (claim_due in app/store/sql/pending.sql), rather than taking the
-- earliest due entities of all: one seller's bulk change — 30,000 invoices imported at once —
-- queued every other seller's changes behind its own, 4.8 s for 20,000 on the 2-core dev machine
-- (tests/hostile/test_bulk_change_hostile.py). This index finds the owners with pending
-- entities (a loose scan) and each one's earliest due.
CREATE INDEX pending_entities_owner_due_idx ON pending_entities ((coalesce(seller_id, 0)), due_at);
