"""The marketplace's object types, one module per family: `catalog` (sellers, products, variants,
option values), `orders`, `invoicing` (invoices, line items, amendments), `shipping`, `refunds`,
and `external_ids`. Each type is built from a database row; relations resolve through the
request's DataLoaders, so a page of 100 invoices with all their relations is a fixed handful of
SQL statements. Money fields carry their `…Cents` / `…Formatted` pair (app.api.money.money_fields)."""

from __future__ import annotations

from typing import Any

from app.api.marketplace.catalog import Product, Seller, Variant
from app.api.marketplace.invoicing import Invoice
from app.api.marketplace.orders import Order
from app.api.marketplace.refunds import RefundRequest
from app.api.marketplace.shipping import Shipment, ShipmentItem

# global-ID type name -> (table, constructor) for node(id) / nodes(ids)
NODE_TYPES: dict[str, tuple[str, Any]] = {
    "Seller": ("sellers", Seller.from_row),
    "Product": ("products", Product.from_row),
    "Variant": ("variants", Variant.from_row),
    "Order": ("orders", Order.from_row),
    "Invoice": ("invoices", Invoice.from_row),
    "Shipment": ("shipments", Shipment.from_row),
    "ShipmentItem": ("shipment_items", ShipmentItem.from_row),
    "RefundRequest": ("refund_requests", RefundRequest.from_row),
}
# Types whose money needs their invoice's currency: loaded through the invoice.
CURRENCY_NODE_TYPES = {
    "InvoiceLineItem": "invoice_line_items",
    "InvoiceAmendment": "invoice_amendments",
    "RefundRequestLineItem": "refund_request_line_items",
}
