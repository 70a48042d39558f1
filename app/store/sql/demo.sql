-- `hookql demo`: marketplace traffic written in plain SQL, as any application writing these
-- tables would, and the tour's bookkeeping in its throwaway database (app.store.demo).

-- name: variants_to_sell
SELECT v.id, v.price, v.currency, p.seller_id
FROM variants v JOIN products p ON p.id = v.product_id
ORDER BY random() LIMIT :limit;

-- name: insert_order
INSERT INTO orders (buyer_name, buyer_email) VALUES (:buyer_name, :buyer_email) RETURNING id;

-- name: insert_invoice
INSERT INTO invoices (order_id, seller_id, currency) VALUES (:order_id, :seller_id, :currency) RETURNING id;

-- name: insert_line_item
INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price)
VALUES (:invoice_id, :variant_id, :quantity, :unit_price);

-- name: any_invoice_in_status
SELECT id FROM invoices WHERE status = :status ORDER BY random() LIMIT 1;

-- name: set_invoice_status
UPDATE invoices SET status = :status WHERE id = :invoice_id;

-- name: insert_shipment
INSERT INTO shipments (invoice_id, carrier, tracking_number, status, shipped_at)
VALUES (:invoice_id, 'DHL', :tracking_number, 'shipped', now()) RETURNING id;

-- name: ship_every_line
INSERT INTO shipment_items (shipment_id, invoice_line_item_id, quantity)
SELECT :shipment_id, id, quantity FROM invoice_line_items WHERE invoice_id = :invoice_id;

-- name: mark_lines_shipped
UPDATE invoice_line_items SET status = 'shipped' WHERE invoice_id = :invoice_id;

-- name: any_refundable_line
SELECT i.id AS invoice_id, li.id AS line_id, li.unit_price FROM invoices i
JOIN invoice_line_items li ON li.invoice_id = i.id WHERE i.status IN ('paid', 'shipped')
ORDER BY random() LIMIT 1;

-- name: insert_refund_request
INSERT INTO refund_requests (invoice_id, reason) VALUES (:invoice_id, :reason) RETURNING id;

-- name: insert_refund_line
INSERT INTO refund_request_line_items (refund_request_id, invoice_line_item_id, quantity, amount)
VALUES (:refund_request_id, :line_id, 1, :amount);

-- name: any_stocked_variant
SELECT id, sku FROM variants WHERE NOT infinite_quantity AND NOT (id = ANY(:excluded_ids::bigint[]))
ORDER BY random() LIMIT 1;

-- name: variant_known_to
-- A random variant whose latest state :webhook_id has been sent, with nothing under way for it
-- (no captured change, no debounce, no pending event): a change its query does not select then
-- evaluates to the payload already sent, and is skipped.
SELECT v.id, v.sku FROM variants v
JOIN webhook_entity_state s ON s.webhook_id = :webhook_id AND s.entity_type = 'variant' AND s.entity_id = v.id
WHERE NOT EXISTS (SELECT 1 FROM changes c WHERE c.entity_type = 'variant' AND c.entity_id = v.id)
  AND NOT EXISTS (SELECT 1 FROM pending_entities p WHERE p.entity_type = 'variant' AND p.entity_id = v.id)
  AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.webhook_id = :webhook_id AND e.status = 'pending'
                  AND e.entity_type = 'variant' AND e.entity_id = v.id)
ORDER BY random() LIMIT 1;

-- name: any_variant
SELECT id, sku FROM variants ORDER BY random() LIMIT 1;

-- name: change_stock
UPDATE variants SET count_on_hand = greatest(0, count_on_hand + :delta) WHERE id = :variant_id;

-- name: raise_price
-- By 5 %.
UPDATE variants SET price = price * 1.05 WHERE id = :variant_id;

-- name: install_change_counts
-- How many changes of each entity type the capture triggers record, so the summary can say how
-- many the engine coalesced away.
CREATE TABLE demo_change_counts (entity_type text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION demo_count_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO demo_change_counts AS c SELECT entity_type, count(*) FROM new_rows GROUP BY entity_type
    ON CONFLICT (entity_type) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE TRIGGER demo_count_changes AFTER INSERT ON changes REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION demo_count_changes();

-- name: forget_changes
-- The fixtures are not news: drop what their loading captured.
TRUNCATE changes, pending_entities;

-- name: changes_captured
SELECT COALESCE(sum(n), 0) FROM demo_change_counts;

-- name: watched_changes_captured
-- Changes of the entity types some webhook watches.
SELECT COALESCE(sum(c.n), 0) FROM demo_change_counts c
WHERE c.entity_type IN (SELECT entity_type FROM webhooks);

-- name: events_by_status
SELECT status, count(*) AS n FROM webhook_events GROUP BY status;

-- name: pending_events
SELECT count(*) FROM webhook_events WHERE status = 'pending';

-- name: unsent_events
-- Events that ended without being sent (the receiver sees their sequence numbers missing), but
-- for those already reported; a superseded event names the sequence that replaced it.
SELECT e.id, w.name AS webhook, e.event, e.sequence, e.status, n.sequence AS superseded_by_sequence,
       COALESCE(v.sku, e.entity_type || ' #' || e.entity_id) AS entity
FROM webhook_events e
JOIN webhooks w ON w.id = e.webhook_id
LEFT JOIN webhook_events n ON n.id = e.superseded_by
LEFT JOIN variants v ON e.entity_type = 'variant' AND v.id = e.entity_id
WHERE e.status IN ('skipped', 'superseded') AND NOT (e.id = ANY(:reported_ids::bigint[]))
ORDER BY e.id;

-- name: drained
-- Nothing captured, debouncing or waiting for delivery.
SELECT NOT EXISTS (SELECT 1 FROM changes) AND NOT EXISTS (SELECT 1 FROM pending_entities)
   AND NOT EXISTS (SELECT 1 FROM webhook_events WHERE status = 'pending');
