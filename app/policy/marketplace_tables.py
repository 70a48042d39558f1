"""The marketplace's GraphQL object types and the tables their objects are rows of: the one map
the API (node lookups, app.api.marketplace), the query compiler (app.evaluation.sql) and the
store's whitelists (app.store.marketplace, which splices these names into SQL) read. Pure data.

A name here is an identifier of the schema in app/store/migrations; adding a type means adding
its table there, its ownership in app.store.marketplace and its fields in app.evaluation.sql."""

from __future__ import annotations

# The Node types (global IDs, `node(id)`): each object is one row of its table, read by id with the
# viewer's visibility.
TABLES: dict[str, str] = {
    "Seller": "sellers",
    "Product": "products",
    "Variant": "variants",
    "Order": "orders",
    "Invoice": "invoices",
    "InvoiceLineItem": "invoice_line_items",
    "Shipment": "shipments",
    "ShipmentItem": "shipment_items",
    "InvoiceAmendment": "invoice_amendments",
    "RefundRequest": "refund_requests",
    "RefundRequestLineItem": "refund_request_line_items",
}

# Object types that are rows but no Node: read only as a parent's children, never by id. An
# option value is read through the view of a variant's links to its values (one row per link).
CHILD_TABLES: dict[str, str] = {
    "ExternalId": "external_ids",
    "OptionValueEdge": "variant_option_value_details",
    "OptionValue": "variant_option_value_details",
}
