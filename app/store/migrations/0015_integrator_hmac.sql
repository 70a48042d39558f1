-- Integrator-keyed HMAC (issue #15): a receiver written for Marketplacer verifies a delivery with a
-- key the integrator chose, sent as `Marketplacer-Hmac-256: base64(HMAC-SHA256(key, body))`. A
-- webhook may carry such a key beside its own Standard Webhooks secret; every delivery and ping
-- then also carries that header. The key is write-only: the API never returns it.

-- NULL: no integrator HMAC header is sent.
ALTER TABLE webhooks ADD COLUMN hmac_key text;
-- The header that carries it; an RFC 9110 token that is none of the engine's own headers (checked
-- when registered).
ALTER TABLE webhooks ADD COLUMN hmac_header text NOT NULL DEFAULT 'Marketplacer-Hmac-256';
