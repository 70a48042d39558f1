-- A change's time is the time of the statement that made it (statement_timestamp()), no longer the
-- clock at the row's insert (clock_timestamp()): the capture triggers insert a statement's changes
-- with one INSERT … SELECT, and with the clock each row of a bulk update came due a little after
-- the one before, so an evaluator that woke as the first came due claimed part of the statement's
-- entities and came back for the rest (bench: a 100-row UPDATE evaluated and enqueued in two
-- passes when the insert took over a millisecond). Now every entity a statement changed is due at
-- the same moment, and goes in one batch. The debounce still counts from the statement that made
-- the last change.
ALTER TABLE changes ALTER COLUMN changed_at SET DEFAULT statement_timestamp();
