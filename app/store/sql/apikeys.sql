-- API keys: stored as a SHA-256 hash, with a short clear prefix to tell them apart.

-- name: seller_exists
SELECT EXISTS (SELECT 1 FROM sellers WHERE id = :seller_id);

-- name: insert_key
INSERT INTO api_keys (key_hash, prefix, name, role, seller_id)
VALUES (:key_hash, :prefix, :name, :role, :seller_id);

-- name: key_grant
-- The role and seller of a live (unrevoked) key.
SELECT role, seller_id FROM api_keys WHERE key_hash = :key_hash AND revoked_at IS NULL;
