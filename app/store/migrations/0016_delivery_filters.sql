-- Delivery filters (issue #15): a webhook may carry a declarative condition over its own payload
-- (app/policy/filters.py). A payload that does not match is recorded SKIPPED with the reason
-- 'filtered' and is never sent.

-- The filter's text as the integrator wrote it (`invoice.status in [SHIPPED, CANCELLED]`); NULL:
-- every payload is delivered.
ALTER TABLE webhooks ADD COLUMN filter text;

-- Why a SKIPPED event was not sent: 'identical' (skipIdenticalPayloads: the receiver has this
-- payload already) or 'filtered' (the webhook's filter did not match it). NULL for other statuses.
ALTER TABLE webhook_events ADD COLUMN skip_reason text
    CHECK (skip_reason IN ('identical', 'filtered') AND status = 'skipped' OR skip_reason IS NULL);

-- A filtered event takes no sequence number: `sequence` counts what a receiver could have been
-- sent, and a receiver never hears of a filtered state. Its sequence is NULL; every other event
-- has one.
ALTER TABLE webhook_events ALTER COLUMN sequence DROP NOT NULL;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_sequence_unless_filtered
    CHECK (sequence IS NOT NULL OR skip_reason = 'filtered');
