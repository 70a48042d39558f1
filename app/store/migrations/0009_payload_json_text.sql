-- Payloads are kept as `json`, the text exactly as the engine encoded it, instead of `jsonb`.
--
-- jsonb stores object keys in its own order (shorter keys first), so receivers got their query's
-- fields reordered; a GraphQL result is an ordered map, and a webhook should deliver exactly the
-- result its query gives. Keeping the text also lets the dispatcher put it into the delivery body
-- as is, instead of decoding and encoding every payload again on every attempt. Nothing queries
-- inside payloads, so jsonb's operators and indexes are not missed.
ALTER TABLE webhook_events ALTER COLUMN payload TYPE json USING payload::json;
