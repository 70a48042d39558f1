-- The database itself: liveness, and the migration runner's bookkeeping (app.store.db).

-- name: ping
SELECT 1;

-- name: migration_lock
-- A session lock: concurrent `serve`/`worker` starts wait here, then find nothing to migrate.
SELECT pg_advisory_lock(:key);

-- name: migration_unlock
SELECT pg_advisory_unlock(:key);

-- name: create_migrations_table
-- One row per applied migration. `checksum` is nullable because databases migrated before
-- checksums were kept have rows without one (see `migrate`).
CREATE TABLE IF NOT EXISTS hookql_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE hookql_migrations ADD COLUMN IF NOT EXISTS checksum text;

-- name: applied_migrations
SELECT version, name, checksum FROM hookql_migrations ORDER BY version;

-- name: adopt_checksums
-- Records the given checksums on rows that have none; a recorded checksum is never replaced.
UPDATE hookql_migrations m SET checksum = a.checksum
FROM unnest(:versions::integer[], :checksums::text[]) AS a(version, checksum)
WHERE m.version = a.version AND m.checksum IS NULL;

-- name: record_migration
INSERT INTO hookql_migrations (version, name, checksum) VALUES (:version, :name, :checksum);
