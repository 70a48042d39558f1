-- Marketplacer's schema breadth (issue #15): the fields integrators' published Marketplacer queries
-- select, with real columns and tables behind them, so those queries register and run unchanged.

ALTER TABLE sellers ADD COLUMN business_name text;            -- Seller.businessName (legal name)
ALTER TABLE orders ADD COLUMN external_id text;               -- Order.externalId (the buyer-side system's id)
ALTER TABLE shipments ADD COLUMN tracking_link text;          -- Shipment.trackingLink (carrier's tracking URL)
ALTER TABLE refund_request_line_items ADD COLUMN reason text NOT NULL DEFAULT '';  -- RefundRequestLineItem.reason
-- A variant's sale price, when it is on sale: Variant.lowestPrice is the lower of it and `price`.
ALTER TABLE variants ADD COLUMN sale_price numeric(12, 2) CHECK (sale_price >= 0);

-- Option types and their values ("Size": S, M …; "Colour": navy …), shared by every seller's
-- variants; a variant has at most one value per type (Variant.optionValues).
CREATE TABLE option_types (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE option_values (
    id              bigserial PRIMARY KEY,
    option_type_id  bigint NOT NULL REFERENCES option_types (id) ON DELETE CASCADE,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (option_type_id, name)
);
CREATE TABLE variant_option_values (
    id               bigserial PRIMARY KEY,
    variant_id       bigint NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    option_value_id  bigint NOT NULL REFERENCES option_values (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (variant_id, option_value_id)
);
CREATE INDEX variant_option_values_option_value_id_idx ON variant_option_values (option_value_id);
-- What Variant.optionValues reads: a variant's values with their type, one row per link (by its id).
CREATE VIEW variant_option_value_details AS
    SELECT l.id, l.variant_id, v.id AS option_value_id, v.name, t.id AS option_type_id, t.name AS option_type_name
    FROM variant_option_values l
    JOIN option_values v ON v.id = l.option_value_id
    JOIN option_types t ON t.id = v.option_type_id;

-- Other systems' ids for a seller, an order or an invoice (`externalIds { key value }`): exactly
-- one owner per row, one value per key and owner.
CREATE TABLE external_ids (
    id          bigserial PRIMARY KEY,
    seller_id   bigint REFERENCES sellers (id) ON DELETE CASCADE,
    order_id    bigint REFERENCES orders (id) ON DELETE CASCADE,
    invoice_id  bigint REFERENCES invoices (id) ON DELETE CASCADE,
    key         text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(seller_id, order_id, invoice_id) = 1)
);
CREATE UNIQUE INDEX external_ids_seller_key_idx ON external_ids (seller_id, key) WHERE seller_id IS NOT NULL;
CREATE UNIQUE INDEX external_ids_order_key_idx ON external_ids (order_id, key) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX external_ids_invoice_key_idx ON external_ids (invoice_id, key) WHERE invoice_id IS NOT NULL;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['option_types', 'option_values', 'variant_option_values', 'external_ids']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION hookql_touch_updated_at()',
                       t || '_touch_updated_at', t);
    END LOOP;
END $$;

-- Capture (SPEC §5.1): a change to one of these rows is an `updated` change of the entities that
-- show it. A variant's option value links are its own; renaming a value or a type touches every
-- variant that has it. An invoice's external ids are the invoice's; an order's are its invoices'
-- (as an order's own columns are). A seller's external ids, like the seller's own columns, are no
-- webhook entity's: sellers are not captured.
CREATE FUNCTION hookql_touch_variants(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO changes (entity_type, entity_id, action, seller_id)
    SELECT 'variant', v.id, 'updated', p.seller_id
    FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id IN (SELECT DISTINCT unnest(ids));
$$;

CREATE FUNCTION hookql_capture_marketplacer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_TABLE_NAME = 'variant_option_values' THEN
        ids := ARRAY(SELECT variant_id FROM changed_rows);
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT variant_id FROM previous_rows);
        END IF;
        PERFORM hookql_touch_variants(ids);

    ELSIF TG_TABLE_NAME = 'option_values' THEN
        IF TG_OP = 'UPDATE' THEN  -- new values have no variants yet; deleted ones cascade to their links
            PERFORM hookql_touch_variants(ARRAY(
                SELECT l.variant_id FROM variant_option_values l WHERE l.option_value_id IN (SELECT id FROM changed_rows)));
        END IF;

    ELSIF TG_TABLE_NAME = 'option_types' THEN
        IF TG_OP = 'UPDATE' THEN
            PERFORM hookql_touch_variants(ARRAY(
                SELECT l.variant_id FROM variant_option_values l JOIN option_values v ON v.id = l.option_value_id
                WHERE v.option_type_id IN (SELECT id FROM changed_rows)));
        END IF;

    ELSIF TG_TABLE_NAME = 'external_ids' THEN
        ids := ARRAY(SELECT invoice_id FROM changed_rows WHERE invoice_id IS NOT NULL)
            || ARRAY(SELECT i.id FROM invoices i WHERE i.order_id IN (SELECT order_id FROM changed_rows));
        IF TG_OP = 'UPDATE' THEN
            ids := ids || ARRAY(SELECT invoice_id FROM previous_rows WHERE invoice_id IS NOT NULL)
                || ARRAY(SELECT i.id FROM invoices i WHERE i.order_id IN (SELECT order_id FROM previous_rows));
        END IF;
        PERFORM hookql_touch_invoices(ids);
    END IF;

    PERFORM pg_notify('hookql_changes', '');
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['option_types', 'option_values', 'variant_option_values', 'external_ids']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture_marketplacer()', t || '_capture_insert', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed_rows '
                       'OLD TABLE AS previous_rows FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture_marketplacer()',
                       t || '_capture_update', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION hookql_capture_marketplacer()', t || '_capture_delete', t);
    END LOOP;
END $$;
