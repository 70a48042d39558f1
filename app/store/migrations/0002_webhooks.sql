-- Webhooks, their events and every attempt (SPEC §4, §5).

CREATE TABLE webhooks (
    id                          bigserial PRIMARY KEY,
    seller_id                   bigint REFERENCES sellers (id) ON DELETE CASCADE,  -- NULL: the operator's
    name                        text NOT NULL,
    url                         text NOT NULL,
    entity_type                 text NOT NULL CHECK (entity_type IN ('invoice', 'variant', 'refund_request')),
    query                       text NOT NULL,
    events                      text[] NOT NULL DEFAULT '{created,updated,deleted}',
    method                      text NOT NULL DEFAULT 'POST' CHECK (method IN ('POST', 'PUT')),
    format                      text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'xml', 'form')),
    headers                     jsonb NOT NULL DEFAULT '[]',  -- [{"name": …, "value": …}] in order
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    skip_identical_payloads     boolean NOT NULL DEFAULT true,
    max_attempts                integer NOT NULL DEFAULT 20 CHECK (max_attempts BETWEEN 1 AND 50),
    timeout_seconds             integer NOT NULL DEFAULT 15 CHECK (timeout_seconds BETWEEN 1 AND 30),
    concurrency                 integer NOT NULL DEFAULT 10 CHECK (concurrency BETWEEN 1 AND 100),
    -- halved by a 429, back up by one per success, never above `concurrency`
    live_concurrency            integer NOT NULL DEFAULT 10 CHECK (live_concurrency >= 1),
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    last_sequence               bigint NOT NULL DEFAULT 0,
    -- first failed attempt since the last success; a webhook failing for 5 days is disabled
    failing_since               timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_entity_type_idx ON webhooks (entity_type) WHERE enabled;
CREATE INDEX webhooks_seller_id_idx ON webhooks (seller_id, id);
CREATE TRIGGER webhooks_touch_updated_at BEFORE UPDATE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION hookql_touch_updated_at();

CREATE TABLE webhook_events (
    id               bigserial PRIMARY KEY,
    public_id        text NOT NULL UNIQUE,  -- evt_<ulid>: body `id`, `webhook-id`, `Idempotency-Key`
    webhook_id       bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    entity_type      text,                  -- NULL for a ping
    entity_id        bigint,
    event            text NOT NULL,         -- `invoice.updated`, `ping`
    sequence         bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed', 'skipped', 'superseded', 'cancelled')),
    payload          jsonb NOT NULL,
    payload_hash     bytea NOT NULL,
    changed_at       timestamptz NOT NULL,  -- time of the latest change coalesced in: body `created_at`
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,           -- set while an engine process is sending it
    superseded_by    bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- One pending event per (webhook, entity): a newer one supersedes the older.
CREATE UNIQUE INDEX webhook_events_one_pending_idx
    ON webhook_events (webhook_id, entity_type, entity_id) WHERE status = 'pending';
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_events_leased_idx ON webhook_events (webhook_id) WHERE leased_until IS NOT NULL;
CREATE INDEX webhook_events_webhook_idx ON webhook_events (webhook_id, id DESC);
CREATE INDEX webhook_events_finished_idx ON webhook_events (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE webhook_attempts (
    id                bigserial PRIMARY KEY,
    event_id          bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    webhook_id        bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempted_at      timestamptz NOT NULL,
    duration_ms       integer NOT NULL,
    status_code       integer,
    response_headers  jsonb NOT NULL DEFAULT '{}',
    response_body     text NOT NULL DEFAULT '',  -- first 4 KiB
    error             text
);
CREATE INDEX webhook_attempts_event_idx ON webhook_attempts (event_id, id);
CREATE INDEX webhook_attempts_webhook_idx ON webhook_attempts (webhook_id, attempted_at DESC);

-- The latest payload enqueued per (webhook, entity), for skipIdenticalPayloads.
CREATE TABLE webhook_entity_state (
    webhook_id        bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    entity_type       text NOT NULL,
    entity_id         bigint NOT NULL,
    last_payload_hash bytea,
    PRIMARY KEY (webhook_id, entity_type, entity_id)
);
