-- Loading the sample marketplace (app.store.fixtures). The per-table statements name their
-- table, so they are templates in the module; only this one is fixed.

-- name: column_types
-- The type of each column, as PostgreSQL spells it, so unnest() gets typed arrays. Tables are
-- found the way the module's unqualified INSERTs find them: through the search_path.
SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relname = ANY(:tables::text[]) AND c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid)
  AND a.attnum > 0 AND NOT a.attisdropped;
