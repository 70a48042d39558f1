-- Compiled webhook queries (app.store.payload_sql): their statements are assembled from that
-- module's templates; this file holds the static statement that runs beside them.

-- name: without_jit
-- For the compiled statement's transaction only. Its cost estimate grows with the fields a group
-- selects and the batch's size, and past `jit_above_cost` PostgreSQL JIT-compiles its hundreds of
-- expressions first: seconds, for a statement that runs in milliseconds (an invoice group of every
-- field over about 50 invoices: 17 s with JIT, 0.2 s without, PostgreSQL 15), past any evaluation budget.
SET LOCAL jit = off;
