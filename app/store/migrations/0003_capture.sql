-- Change capture (SPEC §5.1). Statement-level triggers with transition tables write one change row
-- per affected entity per statement, in the writer's transaction, so a change exists exactly when
-- its transaction commits, and a 10,000-row statement costs one INSERT … SELECT, not 10,000.
-- A change to an owned row is an `updated` change of its owner. pg_notify only wakes listeners;
-- PostgreSQL folds identical notifications of one transaction into one.

CREATE TABLE changes (
    id           bigserial PRIMARY KEY,
    entity_type  text NOT NULL,
    entity_id    bigint NOT NULL,
    action       text NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    seller_id    bigint,  -- owner at change time: a deleted entity's visibility is still known
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Entities with changes folded in but not yet evaluated: the debounce/coalesce state.
CREATE TABLE pending_entities (
    entity_type      text NOT NULL,
    entity_id        bigint NOT NULL,
    action           text NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    seller_id        bigint,
    first_change_at  timestamptz NOT NULL,
    last_change_at   timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    version          bigint NOT NULL DEFAULT 1,  -- bumped per fold; evaluation removes only the version it saw
    claimed_until    timestamptz,                -- an engine process is evaluating it
    PRIMARY KEY (entity_type, entity_id)
);
CREATE INDEX pending_entities_due_idx ON pending_entities (due_at);

-- Owners touched by a child row: only owners that still exist (a cascade from a deleted invoice
-- must not add an `updated` after its `deleted`).
CREATE FUNCTION hookql_touch_invoices(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO changes (entity_type, entity_id, action, seller_id)
    SELECT 'invoice', i.id, 'updated', i.seller_id
    FROM invoices i WHERE i.id IN (SELECT DISTINCT unnest(ids));
$$;

CREATE FUNCTION hookql_touch_refund_requests(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO changes (entity_type, entity_id, action, seller_id)
    SELECT 'refund_request', r.id, 'updated', i.seller_id
    FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id
    WHERE r.id IN (SELECT DISTINCT unnest(ids));
$$;

-- One function for every table; the triggers name the transition table `changed_rows` (the new
-- rows, or the old ones for DELETE) and, for UPDATE, `previous_rows`, so an owner a row moved
-- away from hears about it too.
CREATE FUNCTION hookql_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act text := CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END;
    ids bigint[];
BEGIN
    IF TG_TABLE_NAME = 'invoices' THEN
        INSERT INTO changes (entity_type, entity_id, action, seller_id)
        SELECT 'invoice', r.id, act, r.seller_id FROM changed_rows r;

    ELSIF TG_TABLE_NAME = 'variants' THEN
        INSERT INTO changes (entity_type, entity_id, action, seller_id)
        SELECT 'variant', r.id, act, p.seller_id FROM changed_rows r LEFT JOIN products p ON p.id = r.product_id;

    ELSIF TG_TABLE_NAME = 'products' THEN
        IF TG_OP = 'UPDATE' THEN  -- new products have no variants; deleted ones cascade to theirs
            INSERT INTO changes (entity_type, entity_id, action, seller_id)
            SELECT 'variant', v.id, 'updated', r.seller_id FROM changed_rows r JOIN variants v ON v.product_id = r.id;
        END IF;

    ELSIF TG_TABLE_NAME = 'orders' THEN
        IF TG_OP = 'UPDATE' THEN
            PERFORM hookql_touch_invoices(ARRAY(
                SELECT i.id FROM invoices i WHERE i.order_id IN (SELECT id FROM changed_rows)));
        END IF;

    ELSIF TG_TABLE_NAME IN ('invoice_line_items', 'shipments', 'invoice_amendments') THEN
        ids := ARRAY(SELECT invoice_id FROM changed_rows);
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT invoice_id FROM previous_rows);
        END IF;
        PERFORM hookql_touch_invoices(ids);

    ELSIF TG_TABLE_NAME = 'shipment_items' THEN
        ids := ARRAY(SELECT shipment_id FROM changed_rows);
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT shipment_id FROM previous_rows);
        END IF;
        PERFORM hookql_touch_invoices(ARRAY(SELECT s.invoice_id FROM shipments s WHERE s.id = ANY (ids)));

    ELSIF TG_TABLE_NAME = 'refund_requests' THEN
        INSERT INTO changes (entity_type, entity_id, action, seller_id)
        SELECT 'refund_request', r.id, act, i.seller_id FROM changed_rows r LEFT JOIN invoices i ON i.id = r.invoice_id;
        ids := ARRAY(SELECT invoice_id FROM changed_rows);
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT invoice_id FROM previous_rows);
        END IF;
        PERFORM hookql_touch_invoices(ids);

    ELSIF TG_TABLE_NAME = 'refund_request_line_items' THEN
        ids := ARRAY(SELECT refund_request_id FROM changed_rows);
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT refund_request_id FROM previous_rows);
        END IF;
        PERFORM hookql_touch_refund_requests(ids);
        PERFORM hookql_touch_invoices(ARRAY(SELECT r.invoice_id FROM refund_requests r WHERE r.id = ANY (ids)));
    END IF;

    PERFORM pg_notify('hookql_changes', '');
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['products', 'variants', 'orders', 'invoices', 'invoice_line_items', 'shipments',
        'shipment_items', 'invoice_amendments', 'refund_requests', 'refund_request_line_items']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture()', t || '_capture_insert', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed_rows '
                       'OLD TABLE AS previous_rows FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture()',
                       t || '_capture_update', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture()', t || '_capture_delete', t);
    END LOOP;
END $$;
