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
from app.policy.marketplace_tables import TABLES

# global-ID type name -> (table, constructor) for node(id) / nodes(ids); tables from the one map
NODE_TYPES: dict[str, tuple[str, Any]] = {
    cls.__name__: (TABLES[cls.__name__], cls.from_row)
    for cls in (Seller, Product, Variant, Order, Invoice, Shipment, ShipmentItem, RefundRequest)
}
# Types whose money needs their invoice's currency: loaded through the invoice.
CURRENCY_NODE_TYPES = {name: TABLES[name] for name in ("InvoiceLineItem", "InvoiceAmendment", "RefundRequestLineItem")}
