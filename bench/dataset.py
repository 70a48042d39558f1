"""The bench's marketplace and its webhooks, written with plain SQL as any application would.

The data set is generated (a few set-based statements, ~1 s) rather than loaded from fixtures/:
the producer needs thousands of distinct entities so that, at thousands of commits per second,
it revisits an entity only long after its debounce window has closed."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

SELLERS = 5
PRODUCTS_PER_SELLER = 200
VARIANTS_PER_PRODUCT = 2  # 2,000 variants
INVOICES = 2_000  # each: 3 line items, a shipment (+ item), an amendment, a refund request (+ item)
LINE_ITEMS_PER_INVOICE = 3
INITIAL_MARKER = "bench-0"

ENTITY_TYPES = ("invoice", "variant", "refund_request")

# Realistic nested queries (SPEC §3), each selecting the column the producer writes its marker
# into. `{alias}` makes each webhook's document distinct, as different integrators' queries are:
# otherwise webhooks sharing a query and a visibility share one execution, and the bench would
# measure a best case no marketplace has.
QUERIES = {
    "invoice": (
        "query($id: ID!) { node(id: $id) { ... on Invoice { {alias}: __typename id status"
        " lineItems { quantity status unitPrice { amount currencyCode } variant { sku } }"
        " shipments { carrier trackingNumber status }"
        " amendments { reason amount { amount } }"
        " total { amount currencyCode formatted } } } }"
    ),
    "variant": (
        "query($id: ID!) { node(id: $id) { ... on Variant { {alias}: __typename id sku barcode countOnHand"
        " price { amount currencyCode formatted } product { title seller { name } } } } }"
    ),
    "refund_request": (
        "query($id: ID!) { node(id: $id) { ... on RefundRequest { {alias}: __typename id status reason"
        " lineItems { quantity status amount { amount currencyCode } }"
        " total { amount currencyCode } } } }"
    ),
}


def webhook_query(entity_type: str, alias: str = "hook") -> str:
    return QUERIES[entity_type].replace("{alias}", alias)


async def create_marketplace(conn: asyncpg.Connection) -> None:
    """Sellers, products, variants, orders and invoices with every owned row type."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sellers (name) SELECT 'Bench Seller ' || g FROM generate_series(1, $1) g", SELLERS
        )
        await conn.execute(
            "INSERT INTO products (seller_id, title, description)"
            " SELECT s.id, 'Product ' || s.id || '-' || g, 'A benchmark product'"
            " FROM sellers s, generate_series(1, $1) g",
            PRODUCTS_PER_SELLER,
        )
        await conn.execute(
            "INSERT INTO variants (product_id, sku, barcode, count_on_hand, price)"
            " SELECT p.id, 'SKU-' || p.id || '-' || g, $2, 100, 10.99 + p.id % 90"
            " FROM products p, generate_series(1, $1) g",
            VARIANTS_PER_PRODUCT,
            INITIAL_MARKER,
        )
        await conn.execute(
            "INSERT INTO orders (buyer_name, buyer_email, status)"
            " SELECT 'Buyer ' || g, 'buyer' || g || '@example.com', 'paid' FROM generate_series(1, $1) g",
            INVOICES,
        )
        await conn.execute(
            "INSERT INTO invoices (order_id, seller_id, status)"
            " SELECT o.id, (SELECT array_agg(id ORDER BY id) FROM sellers)[1 + o.id % $1], 'paid'"
            " FROM orders o",
            SELLERS,
        )
        # Line items use the invoice's own seller's variants, so every seller's view is whole.
        await conn.execute(
            "WITH sv AS (SELECT v.id, v.price, p.seller_id,"
            "   row_number() OVER (PARTITION BY p.seller_id ORDER BY v.id) - 1 AS rn,"
            "   count(*) OVER (PARTITION BY p.seller_id) AS n"
            " FROM variants v JOIN products p ON p.id = v.product_id)"
            " INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price, status)"
            " SELECT i.id, sv.id, 1 + g, sv.price, 'allocated'"
            " FROM invoices i CROSS JOIN generate_series(0, $1 - 1) g"
            " JOIN sv ON sv.seller_id = i.seller_id AND sv.rn = (i.id * $1 + g) % sv.n",
            LINE_ITEMS_PER_INVOICE,
        )
        await conn.execute(
            "INSERT INTO shipments (invoice_id, carrier, tracking_number, status, shipped_at)"
            " SELECT id, 'DHL', $1, 'in_transit', now() FROM invoices",
            INITIAL_MARKER,
        )
        await conn.execute(
            "INSERT INTO shipment_items (shipment_id, invoice_line_item_id, quantity)"
            " SELECT s.id, min(li.id), 1 FROM shipments s"
            " JOIN invoice_line_items li ON li.invoice_id = s.invoice_id GROUP BY s.id"
        )
        await conn.execute(
            "INSERT INTO invoice_amendments (invoice_id, reason, amount)"
            " SELECT id, 'shipping refund', -4.95 FROM invoices"
        )
        await conn.execute(
            "INSERT INTO refund_requests (invoice_id, status, reason) SELECT id, 'awaiting', $1 FROM invoices",
            INITIAL_MARKER,
        )
        await conn.execute(
            "INSERT INTO refund_request_line_items"
            " (refund_request_id, invoice_line_item_id, quantity, amount)"
            " SELECT r.id, li.id, 1, li.unit_price FROM refund_requests r"
            " JOIN LATERAL (SELECT id, unit_price FROM invoice_line_items WHERE invoice_id = r.invoice_id"
            "   ORDER BY id LIMIT 1) li ON true"
        )
        # Loading the data set is not a change anyone subscribed to.
        await conn.execute("TRUNCATE changes, pending_entities")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class WebhookSpec:
    name: str
    entity_type: str
    seller_id: int | None
    query: str


def plan_webhooks(
    count: int,
    seller_ids: Sequence[int],
    *,
    types: Sequence[str] = ENTITY_TYPES,
    operator_only: bool = False,
    distinct_queries: bool = True,
) -> list[WebhookSpec]:
    """`count` webhooks cycling over `types`; every other one owned by a seller (round-robin),
    the rest by the operator, as a marketplace with its own ERP and its sellers' integrations has."""
    specs = []
    for i in range(count):
        entity_type = types[i % len(types)]
        seller_id = None if operator_only or i % 2 == 0 else seller_ids[(i // 2) % len(seller_ids)]
        alias = f"w{i}" if distinct_queries else "hook"
        specs.append(WebhookSpec(f"w{i}", entity_type, seller_id, webhook_query(entity_type, alias)))
    return specs


async def create_webhooks(
    conn: asyncpg.Connection, specs: Sequence[WebhookSpec], url_for: Callable[[str], str]
) -> None:
    """Insert the webhooks directly (registration is not what the bench measures)."""
    await conn.executemany(
        "INSERT INTO webhooks (name, url, entity_type, query, seller_id, secret) VALUES ($1, $2, $3, $4, $5, $6)",
        [(s.name, url_for(s.name), s.entity_type, s.query, s.seller_id, new_secret()) for s in specs],
    )


async def seller_ids(conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM sellers ORDER BY id")]
