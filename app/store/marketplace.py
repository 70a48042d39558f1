"""The API's reads of the marketplace tables: one statement per table (by id, a keyset page) and
per parent-child link, built from templates because the table varies.

Only the tables and foreign keys named below are ever spliced into a statement; every value a
request supplies travels as a parameter. An unknown name is a `KeyError`, never SQL.

Visibility is enforced in SQL: for a seller, every by-id lookup and page joins up to the row's
seller, so a foreign row is simply not found. Children are loaded by their parent's id and are
visible exactly when the (already visible) parent is; an order's invoices also filter by seller."""

from __future__ import annotations

from functools import cache

from app.policy.marketplace_tables import TABLES as TYPE_TABLES
from app.store.queries import Query, compile_block

# The tables read by id: the Node types' (app.policy.marketplace_tables holds the one map from
# GraphQL type to table); the only table names `by_id` splices into a statement.
TABLES = tuple(TYPE_TABLES.values())

# table -> (FROM clause with alias t, the expression naming the row's seller), for every table of
# TABLES but orders (a seller's when it holds one of its invoices: `_ORDERS_BY_ID`)
OWNERSHIP: dict[str, tuple[str, str]] = {
    "sellers": ("sellers t", "t.id"),
    "products": ("products t", "t.seller_id"),
    "variants": ("variants t JOIN products p ON p.id = t.product_id", "p.seller_id"),
    "invoices": ("invoices t", "t.seller_id"),
    "invoice_line_items": ("invoice_line_items t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "shipments": ("shipments t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "shipment_items": (
        "shipment_items t JOIN shipments s ON s.id = t.shipment_id JOIN invoices i ON i.id = s.invoice_id",
        "i.seller_id",
    ),
    "invoice_amendments": ("invoice_amendments t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "refund_requests": ("refund_requests t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "refund_request_line_items": (
        "refund_request_line_items t JOIN refund_requests r ON r.id = t.refund_request_id "
        "JOIN invoices i ON i.id = r.invoice_id",
        "i.seller_id",
    ),
}

# link name -> (child table, foreign key to the parent); children come ordered by id
CHILDREN: dict[str, tuple[str, str]] = {
    "products_by_seller": ("products", "seller_id"),
    "variants_by_product": ("variants", "product_id"),
    "invoices_by_order": ("invoices", "order_id"),
    "line_items_by_invoice": ("invoice_line_items", "invoice_id"),
    "shipments_by_invoice": ("shipments", "invoice_id"),
    "shipment_items_by_shipment": ("shipment_items", "shipment_id"),
    "amendments_by_invoice": ("invoice_amendments", "invoice_id"),
    "refund_requests_by_invoice": ("refund_requests", "invoice_id"),
    "refund_lines_by_refund_request": ("refund_request_line_items", "refund_request_id"),
    "external_ids_by_seller": ("external_ids", "seller_id"),
    "external_ids_by_order": ("external_ids", "order_id"),
    "external_ids_by_invoice": ("external_ids", "invoice_id"),
    # a view: each link of a variant to an option value, with the value's name and its type's
    "option_values_by_variant": ("variant_option_value_details", "variant_id"),
}

_ORDERS_BY_ID = (
    "SELECT t.* FROM orders t WHERE t.id = ANY(:ids::bigint[]) AND (:seller_id::bigint IS NULL OR EXISTS "
    "(SELECT 1 FROM invoices i WHERE i.order_id = t.id AND i.seller_id = :seller_id))"
)
_BY_ID = (
    "SELECT t.* FROM {source} WHERE t.id = ANY(:ids::bigint[])"
    " AND (:seller_id::bigint IS NULL OR {seller} = :seller_id)"
)
_PAGE = (
    "SELECT t.* FROM {source} WHERE t.id > :after_id AND (:seller_id::bigint IS NULL OR {seller} = :seller_id)"
    " ORDER BY t.id LIMIT :limit"
)
_CHILDREN = "SELECT t.* FROM {table} t WHERE t.{fk} = ANY(:parent_ids::bigint[]){seller_filter} ORDER BY t.id"
# An order's invoices: a seller sees only its own.
INVOICE_SELLER_FILTER = " AND (:seller_id::bigint IS NULL OR t.seller_id = :seller_id)"


@cache
def by_id(table: str) -> Query:
    """The rows of `table` with the given ids that the viewer may see: `(ids=[…], seller_id=…)`,
    `seller_id` None for the operator."""
    if table == "orders":
        return compile_block("orders_by_id", _ORDERS_BY_ID)
    source, seller = OWNERSHIP[table]
    return compile_block(f"{table}_by_id", _BY_ID.format(source=source, seller=seller))


@cache
def page(table: str) -> Query:
    """Keyset page of a root list: ids after the cursor, visible to the viewer, ordered by id:
    `(after_id=…, seller_id=…, limit=…)`. Ask for one row more than shown to learn whether there
    is a next page."""
    source, seller = OWNERSHIP[table]
    return compile_block(f"{table}_page", _PAGE.format(source=source, seller=seller))


@cache
def children(link: str) -> Query:
    """The children of the given parents along one link of `CHILDREN`: `(parent_ids=[…])`, and
    `seller_id` too when `"seller_id" in query.params` (an order's invoices)."""
    table, fk = CHILDREN[link]
    seller_filter = INVOICE_SELLER_FILTER if table == "invoices" else ""
    return compile_block(link, _CHILDREN.format(table=table, fk=fk, seller_filter=seller_filter))
