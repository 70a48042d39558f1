-- `hookql listen` (issue #13): a developer's CLI takes a webhook's deliveries over the GraphQL
-- websocket and forwards them to a local URL, so the server never connects to the developer's
-- machine. While a webhook is held that way its events are not dispatched over HTTP: the
-- listener claims them (a lease on the event, as a dispatcher's) and reports each local answer,
-- which is recorded as the attempt.

-- While in the future, a `hookql listen` holds this webhook: its deliveries go to the listener,
-- never over HTTP. The CLI renews it while it runs (HOOKQL_LISTEN_LEASE_S ahead); once it has
-- passed, an attached webhook is delivered over HTTP again.
ALTER TABLE webhooks ADD COLUMN listen_until timestamptz;

-- A temporary webhook that `hookql listen` created: never delivered over HTTP (its `url` is the
-- CLI's local target, shown for information only), and deleted by the engine once listen_until
-- has passed (the CLI deletes it itself when it exits cleanly).
ALTER TABLE webhooks ADD COLUMN listen_only boolean NOT NULL DEFAULT false;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_listen_only_has_lease CHECK (NOT listen_only OR listen_until IS NOT NULL);

-- The engine's sweep of lapsed listeners looks only at held webhooks.
CREATE INDEX webhooks_listen_until_idx ON webhooks (listen_until) WHERE listen_until IS NOT NULL;
