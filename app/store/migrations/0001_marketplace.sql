-- The marketplace: the tables integrators write with plain SQL (SPEC §3).
-- Statuses are lower-case text guarded by CHECK constraints; the API maps them to GraphQL enums.

CREATE FUNCTION hookql_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TABLE sellers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    seller_id   bigint NOT NULL REFERENCES sellers (id) ON DELETE CASCADE,
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_seller_id_idx ON products (seller_id);

CREATE TABLE variants (
    id                bigserial PRIMARY KEY,
    product_id        bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    sku               text NOT NULL UNIQUE,
    barcode           text,
    count_on_hand     integer NOT NULL DEFAULT 0,
    infinite_quantity boolean NOT NULL DEFAULT false,
    price             numeric(12, 2) NOT NULL,
    currency          char(3) NOT NULL DEFAULT 'USD',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX variants_product_id_idx ON variants (product_id);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    buyer_name  text NOT NULL,
    buyer_email text NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE invoices (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seller_id   bigint NOT NULL REFERENCES sellers (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'partially_shipped', 'shipped', 'cancelled', 'refunded')),
    currency    char(3) NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_order_id_idx ON invoices (order_id);
CREATE INDEX invoices_seller_id_idx ON invoices (seller_id, id);

CREATE TABLE invoice_line_items (
    id          bigserial PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    variant_id  bigint REFERENCES variants (id) ON DELETE SET NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(12, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'allocated', 'shipped', 'cancelled', 'refunded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoice_line_items_invoice_id_idx ON invoice_line_items (invoice_id);
CREATE INDEX invoice_line_items_variant_id_idx ON invoice_line_items (variant_id);

CREATE TABLE shipments (
    id              bigserial PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    carrier         text NOT NULL,
    tracking_number text,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'shipped', 'in_transit', 'delivered', 'returned')),
    shipped_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_invoice_id_idx ON shipments (invoice_id);

CREATE TABLE shipment_items (
    id                   bigserial PRIMARY KEY,
    shipment_id          bigint NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    invoice_line_item_id bigint NOT NULL REFERENCES invoice_line_items (id) ON DELETE CASCADE,
    quantity             integer NOT NULL CHECK (quantity > 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipment_items_shipment_id_idx ON shipment_items (shipment_id);
CREATE INDEX shipment_items_line_item_id_idx ON shipment_items (invoice_line_item_id);

CREATE TABLE invoice_amendments (
    id          bigserial PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    reason      text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoice_amendments_invoice_id_idx ON invoice_amendments (invoice_id);

CREATE TABLE refund_requests (
    id          bigserial PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'awaiting'
        CHECK (status IN ('awaiting', 'approved', 'rejected', 'refunded', 'cancelled')),
    reason      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_requests_invoice_id_idx ON refund_requests (invoice_id, id);

CREATE TABLE refund_request_line_items (
    id                   bigserial PRIMARY KEY,
    refund_request_id    bigint NOT NULL REFERENCES refund_requests (id) ON DELETE CASCADE,
    invoice_line_item_id bigint NOT NULL REFERENCES invoice_line_items (id) ON DELETE CASCADE,
    quantity             integer NOT NULL CHECK (quantity > 0),
    amount               numeric(12, 2) NOT NULL,
    status               text NOT NULL DEFAULT 'awaiting'
        CHECK (status IN ('awaiting', 'approved', 'rejected', 'refunded')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_request_line_items_rr_id_idx ON refund_request_line_items (refund_request_id);
CREATE INDEX refund_request_line_items_li_id_idx ON refund_request_line_items (invoice_line_item_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sellers', 'products', 'variants', 'orders', 'invoices',
        'invoice_line_items', 'shipments', 'shipment_items', 'invoice_amendments',
        'refund_requests', 'refund_request_line_items']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION hookql_touch_updated_at()',
                       t || '_touch_updated_at', t);
    END LOOP;
END $$;

-- API keys: only a SHA-256 of the key is stored; the prefix lets an operator recognise a key.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    name        text NOT NULL DEFAULT '',
    role        text NOT NULL CHECK (role IN ('operator', 'seller')),
    seller_id   bigint REFERENCES sellers (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'seller') = (seller_id IS NOT NULL))
);
