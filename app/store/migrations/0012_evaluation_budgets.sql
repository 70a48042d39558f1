-- Runtime budgets of webhook evaluations (issue #11): an evaluation that runs out of time, or whose
-- payload is larger than allowed, must not block anyone else, and its owner must learn why. It is
-- recorded as a FAILED event that carries the reason and is never sent; a webhook whose evaluations
-- breach again and again is disabled, with the reason, as one whose receiver answers 410 is.

-- Why an event was never sent: set only when its evaluation breached a budget ("evaluation
-- exceeded its 1,000 ms budget", "payload is 2,731,008 bytes; the limit is 262,144"). Delivery
-- failures stay on the event's attempts.
ALTER TABLE webhook_events ADD COLUMN error text;

-- Consecutive batches in which this webhook's evaluation breached a budget; a batch in which it
-- only succeeded sets it back to 0, and reaching HOOKQL_BUDGET_BREACHES_TO_DISABLE disables the
-- webhook (and starts a new count for when it is enabled again).
ALTER TABLE webhooks ADD COLUMN budget_breaches integer NOT NULL DEFAULT 0;

-- Breaches are counted for /metrics in hookql_metric_counters (migration 0007) by the statement
-- that records them: metric 'budget_breaches', label 'time' or 'size', one per FAILED event.
