-- Owners of entities deleted by a cascade (SPEC §2, §6).
--
-- 0003 records a deleted variant with the seller of its product, and a deleted refund request with
-- the seller of its invoice. When the product (or invoice, order, seller) is what was deleted, the
-- cascade deletes the child after its parent, the join finds nothing and the change carries no
-- seller: a seller's webhook then never hears that its variant or refund request is gone.
--
-- A BEFORE DELETE row trigger on the parent still sees the children and the parent's seller, and
-- records their `deleted` changes with it. The cascade's own (seller-less) change follows; the
-- listener folds deleted+deleted into one `deleted` and keeps the last known seller. Row-level on
-- purpose: a statement-level trigger runs only after the cascade, when the children are gone. Each
-- firing is one indexed lookup inside the server, so a bulk delete costs no round trips.

CREATE FUNCTION hookql_capture_cascade_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'products' THEN
        INSERT INTO changes (entity_type, entity_id, action, seller_id)
        SELECT 'variant', v.id, 'deleted', OLD.seller_id FROM variants v WHERE v.product_id = OLD.id;
    ELSIF TG_TABLE_NAME = 'invoices' THEN
        INSERT INTO changes (entity_type, entity_id, action, seller_id)
        SELECT 'refund_request', r.id, 'deleted', OLD.seller_id FROM refund_requests r WHERE r.invoice_id = OLD.id;
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER products_capture_cascade_owner BEFORE DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION hookql_capture_cascade_owner();
CREATE TRIGGER invoices_capture_cascade_owner BEFORE DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION hookql_capture_cascade_owner();
