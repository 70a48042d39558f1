-- One delivery's payload, url and secret in ONE statement: $1 the subscription (peer_webhooks.id),
-- $2 the invoice. The JSON mirrors hookql's delivery for the peers' webhook query (bench/peers/
-- workload.py: PEER_QUERY): the invoice with its line items (and their variants' SKUs), shipments,
-- amendments and total. Every peer runs this same text; only the queue around it differs.
SELECT w.url,
       w.secret,
       json_build_object(
           'type', 'invoice.updated',
           'timestamp', now(),
           'data', json_build_object(
               'id', encode(convert_to('Invoice:' || i.id, 'UTF8'), 'base64'),
               'legacyId', i.id,
               'status', upper(i.status),
               'lineItems', coalesce((
                   SELECT json_agg(json_build_object(
                              'quantity', li.quantity,
                              'status', upper(li.status),
                              'unitPrice', json_build_object('amount', li.unit_price::text,
                                                             'currencyCode', i.currency),
                              'variant', CASE WHEN v.id IS NOT NULL THEN json_build_object('sku', v.sku) END)
                              ORDER BY li.id)
                   FROM invoice_line_items li LEFT JOIN variants v ON v.id = li.variant_id
                   WHERE li.invoice_id = i.id), '[]'),
               'shipments', coalesce((
                   SELECT json_agg(json_build_object('carrier', s.carrier, 'trackingNumber', s.tracking_number,
                                                     'status', upper(s.status)) ORDER BY s.id)
                   FROM shipments s WHERE s.invoice_id = i.id), '[]'),
               'amendments', coalesce((
                   SELECT json_agg(json_build_object('reason', a.reason,
                                                     'amount', json_build_object('amount', a.amount::text))
                                   ORDER BY a.id)
                   FROM invoice_amendments a WHERE a.invoice_id = i.id), '[]'),
               'total', json_build_object(
                   'amount', ((SELECT coalesce(sum(li.quantity * li.unit_price), 0)
                               FROM invoice_line_items li WHERE li.invoice_id = i.id)
                            + (SELECT coalesce(sum(a.amount), 0)
                               FROM invoice_amendments a WHERE a.invoice_id = i.id))::text,
                   'currencyCode', i.currency)))::text AS body
FROM peer_webhooks w, invoices i
WHERE w.id = $1 AND i.id = $2
