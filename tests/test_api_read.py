"""The marketplace API read side: fields, money, totals, pagination, batching and visibility."""

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.models import OPERATOR, Visibility


async def run(
    pool: asyncpg.Pool, query: str, visibility: Visibility = OPERATOR, **variables: Any
) -> tuple[dict[str, Any], Any]:
    context = make_context(pool, visibility)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data, context


EVERYTHING = """
query($first: Int!) { invoices(first: $first) { edges { node {
  id legacyId status currency subtotal { amount } total { amount currencyCode formatted }
  order { buyerName buyerEmail status } seller { name }
  lineItems { quantity unitPrice { amount } status variant { sku price { amount } product { title seller { name } } } }
  shipments { carrier trackingNumber status shippedAt items { quantity invoiceLineItem { quantity } } }
  amendments { reason amount { amount } }
  refundRequests { status reason total { amount } lineItems { quantity amount { amount } status
                   invoiceLineItem { legacyId } } }
} } pageInfo { hasNextPage endCursor } } }
"""


@pytest.mark.parametrize("first", [10, 100])
async def test_a_page_of_invoices_with_every_relation_is_a_fixed_handful_of_statements(
    fixture_pool: asyncpg.Pool, first: int
) -> None:
    await run(fixture_pool, EVERYTHING, first=first)  # a warm pool, as in a running server
    data, context = await run(fixture_pool, EVERYTHING, first=first)
    assert len(data["invoices"]["edges"]) == first
    assert context.loaders.statements <= 12


async def test_statements_are_counted_at_the_connection_too(fixture_database_url: str) -> None:
    seen: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        from app.db import init_connection

        await init_connection(conn)
        # asyncpg's own reset on returning a connection to the pool is housekeeping, not the request's SQL
        conn.add_query_logger(
            lambda r: None if r.query.startswith("SELECT pg_advisory_unlock_all()") else seen.append(r.query)
        )

    pool = await asyncpg.create_pool(fixture_database_url, min_size=1, max_size=4, init=init)
    try:
        await run(pool, EVERYTHING, first=100)  # warm up: asyncpg introspects types on first use
        seen.clear()
        await run(pool, EVERYTHING, first=100)
    finally:
        await pool.close()
    assert 0 < len(seen) <= 12


async def test_totals_money_and_enums(fixture_pool: asyncpg.Pool) -> None:
    expected = await fixture_pool.fetchrow(
        "SELECT i.id, i.currency, "
        "(SELECT sum(quantity * unit_price) FROM invoice_line_items WHERE invoice_id = i.id) s, "
        "(SELECT coalesce(sum(amount), 0) FROM invoice_amendments WHERE invoice_id = i.id) a "
        "FROM invoices i WHERE EXISTS (SELECT 1 FROM invoice_amendments WHERE invoice_id = i.id) ORDER BY id LIMIT 1"
    )
    data, _ = await run(
        fixture_pool,
        "query($id: ID!) { invoice(id: $id) { status subtotal { amount } total { amount currencyCode formatted } } }",
        id=to_global_id("Invoice", expected["id"]),
    )
    invoice = data["invoice"]
    assert invoice["subtotal"]["amount"] == str(expected["s"])
    assert Decimal(invoice["total"]["amount"]) == expected["s"] + expected["a"]
    assert invoice["total"]["currencyCode"] == expected["currency"].strip()
    assert invoice["status"].isupper()
    assert any(ch.isdigit() for ch in invoice["total"]["formatted"])


async def test_pagination_walks_every_invoice_once(fixture_pool: asyncpg.Pool) -> None:
    seen: list[int] = []
    after = None
    while True:
        data, _ = await run(
            fixture_pool,
            "query($after: String) { invoices(first: 50, after: $after) { "
            "edges { node { legacyId } } pageInfo { hasNextPage endCursor } } }",
            after=after,
        )
        page = data["invoices"]
        seen += [e["node"]["legacyId"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [r["id"] for r in await fixture_pool.fetch("SELECT id FROM invoices ORDER BY id")]


@pytest.mark.parametrize(
    ("args", "message"),
    [("first: 101", "between 0 and 100"), ("first: -1", "between 0 and 100"), ('after: "bm9wZQ=="', "not a cursor")],
)
async def test_bad_pagination_arguments_are_clear_errors(fixture_pool: asyncpg.Pool, args: str, message: str) -> None:
    result = await schema.execute(
        f"{{ invoices({args}) {{ edges {{ cursor }} }} }}", context_value=make_context(fixture_pool, OPERATOR)
    )
    assert result.errors and message in result.errors[0].message


async def test_garbage_ids_are_null_not_errors(fixture_pool: asyncpg.Pool) -> None:
    data, _ = await run(
        fixture_pool,
        '{ a: node(id: "%%%") { id } b: node(id: "SW52b2ljZTo=") { id } '
        'c: invoice(id: "VmFyaWFudDox") { id } d: nodes(ids: ["x", "SW52b2ljZTox"]) { id } }',
    )
    assert data == {"a": None, "b": None, "c": None, "d": [None, {"id": "SW52b2ljZTox"}]}


async def test_a_seller_sees_only_its_own_by_every_path(fixture_pool: asyncpg.Pool) -> None:
    mine = Visibility(1)
    own_invoice = await fixture_pool.fetchval("SELECT id FROM invoices WHERE seller_id = 1 ORDER BY id LIMIT 1")
    foreign = await fixture_pool.fetchrow(
        "SELECT i.id AS invoice, i.order_id, (SELECT v.id FROM variants v JOIN products p ON p.id = v.product_id "
        "WHERE p.seller_id = 2 LIMIT 1) AS variant, "
        "(SELECT p.id FROM products p WHERE p.seller_id = 2 LIMIT 1) AS product "
        "FROM invoices i WHERE i.seller_id = 2 ORDER BY i.id LIMIT 1"
    )
    foreign_refund = await fixture_pool.fetchval(
        "SELECT r.id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id WHERE i.seller_id <> 1 LIMIT 1"
    )
    ids = {
        "inv": to_global_id("Invoice", foreign["invoice"]),
        "var": to_global_id("Variant", foreign["variant"]),
        "rr": to_global_id("RefundRequest", foreign_refund),
        "seller": to_global_id("Seller", 2),
        "product": to_global_id("Product", foreign["product"]),
    }
    query = """query($inv: ID!, $var: ID!, $rr: ID!, $seller: ID!, $product: ID!) {
      a: invoice(id: $inv) { id } b: variant(id: $var) { id } c: refundRequest(id: $rr) { id }
      d: node(id: $inv) { id } e: node(id: $seller) { id } f: node(id: $product) { id } g: node(id: $var) { id }
      h: nodes(ids: [$inv, $var, $rr]) { id } }"""
    data, _ = await run(fixture_pool, query, mine, **ids)
    assert data == {
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "e": None,
        "f": None,
        "g": None,
        "h": [None, None, None],
    }
    # the operator sees the same objects
    data, _ = await run(fixture_pool, query, OPERATOR, **ids)
    assert all(v is not None for v in data.values())
    # lists and nested relations are filtered
    data, _ = await run(
        fixture_pool,
        "{ invoices(first: 100) { edges { node { seller { legacyId } order { "
        "invoices { seller { legacyId } } } } } } variants(first: 100) { edges { node { product { "
        "seller { legacyId } } } } } refundRequests(first: 100) { edges { node { invoice { "
        "seller { legacyId } } } } } }",
        mine,
    )
    sellers = {e["node"]["seller"]["legacyId"] for e in data["invoices"]["edges"]}
    sellers |= {i["seller"]["legacyId"] for e in data["invoices"]["edges"] for i in e["node"]["order"]["invoices"]}
    sellers |= {e["node"]["product"]["seller"]["legacyId"] for e in data["variants"]["edges"]}
    sellers |= {e["node"]["invoice"]["seller"]["legacyId"] for e in data["refundRequests"]["edges"]}
    assert sellers == {1}
    data, _ = await run(
        fixture_pool, "query($id: ID!) { invoice(id: $id) { legacyId } }", mine, id=to_global_id("Invoice", own_invoice)
    )
    assert data["invoice"] == {"legacyId": own_invoice}
