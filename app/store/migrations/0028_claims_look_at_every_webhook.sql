-- A claim looks at each webhook's earliest due events, up to the room the webhook has
-- (claim_events in app/store/sql/delivery.sql), rather than at the earliest due events of all:
-- one seller's backlog of due events (a receiver down for a day: tens of thousands) filled the
-- claim's window of 5,000, and every other owner's retries waited until it drained
-- (tests/hostile/test_backlog_hostile.py). This index serves that per-webhook scan, in due order.
CREATE INDEX webhook_events_due_by_webhook_idx ON webhook_events (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';
