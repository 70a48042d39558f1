"""The marketplace API read side: fields, money, totals, pagination and batching (visibility:
test_api_visibility.py)."""

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.config import Settings
from app.store.db import init_connection
from app.types import OPERATOR, Visibility

# EVERYTHING at 100 invoices is estimated at ~500,000 objects and values (every plain list counted
# at 20 items), over the operator's default cost limit: these tests count SQL statements, not cost.
BATCHING = Settings(operator_max_cost=1_000_000)


async def run(
    pool: asyncpg.Pool,
    query: str,
    visibility: Visibility = OPERATOR,
    settings: Settings | None = None,
    **variables: Any,
) -> tuple[dict[str, Any], Any]:
    context = make_context(pool, visibility, settings)
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
    await run(fixture_pool, EVERYTHING, settings=BATCHING, first=first)  # a warm pool, as in a running server
    data, context = await run(fixture_pool, EVERYTHING, settings=BATCHING, first=first)
    assert len(data["invoices"]["edges"]) == first
    assert context.loaders.statements <= 12


async def test_statements_are_counted_at_the_connection_too(fixture_database_url: str) -> None:
    """Counted by asyncpg itself, so no statement can bypass the loaders unnoticed."""
    seen: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        # asyncpg's own reset on returning a connection to the pool is housekeeping, not the request's SQL
        conn.add_query_logger(
            lambda r: None if r.query.startswith("SELECT pg_advisory_unlock_all()") else seen.append(r.query)
        )

    statements: dict[int, list[str]] = {}
    pool = await asyncpg.create_pool(fixture_database_url, min_size=1, max_size=4, init=init)
    try:
        await run(pool, EVERYTHING, settings=BATCHING, first=100)  # warm up: asyncpg introspects types on first use
        for first in (10, 100):
            seen.clear()
            await run(pool, EVERYTHING, settings=BATCHING, first=first)
            statements[first] = list(seen)
    finally:
        await pool.close()
    # one statement per kind of relation, run once however many invoices the page holds: 100
    # invoices need no statement that 10 did not (10 may need fewer: their relations can be empty)
    assert 0 < len(statements[100]) <= 12
    for run_statements in statements.values():
        assert len(run_statements) == len(set(run_statements)), run_statements
    assert set(statements[10]) <= set(statements[100])


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
    [
        ("first: 101", "between 0 and 100"),
        ("first: -1", "between 0 and 100"),
        ('after: "bm9wZQ=="', "not a cursor"),
        ('after: "%%%"', "not a cursor"),
        ('after: "Y3Vyc29yOsKy"', "not a cursor"),  # "cursor:²": a digit to str.isdigit(), not to int()
    ],
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
        'c: invoice(id: "VmFyaWFudDox") { id } d: nodes(ids: ["x", "SW52b2ljZTox"]) { id } '
        'e: node(id: "SW52b2ljZTrCsg==") { id } f: node(id: "Tm9wZTox") { id } }',  # "Invoice:²", "Nope:1"
    )
    assert data == {"a": None, "b": None, "c": None, "d": [None, {"id": "SW52b2ljZTox"}], "e": None, "f": None}


async def test_columns_are_camel_case_fields_with_exact_values(fixture_pool: asyncpg.Pool) -> None:
    # given a variant, and a refund request with line items, as the database holds them
    variant = await fixture_pool.fetchrow("SELECT * FROM variants ORDER BY id LIMIT 1")
    refund = await fixture_pool.fetchrow(
        "SELECT r.*, i.currency, (SELECT sum(amount) FROM refund_request_line_items WHERE refund_request_id = r.id) "
        "AS total FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id "
        "WHERE EXISTS (SELECT 1 FROM refund_request_line_items WHERE refund_request_id = r.id) ORDER BY r.id LIMIT 1"
    )

    # when both are read through the API
    data, _ = await run(
        fixture_pool,
        "query($v: ID!, $r: ID!) { variant(id: $v) { id legacyId sku barcode countOnHand infiniteQuantity currency "
        "price { amount currencyCode } createdAt updatedAt } "
        "refundRequest(id: $r) { legacyId status reason total { amount currencyCode } invoice { legacyId } } }",
        v=to_global_id("Variant", variant["id"]),
        r=to_global_id("RefundRequest", refund["id"]),
    )

    # then each field is its column, money is an exact decimal string and statuses are upper-case enums
    assert data["variant"] == {
        "id": to_global_id("Variant", variant["id"]),
        "legacyId": variant["id"],
        "sku": variant["sku"],
        "barcode": variant["barcode"],
        "countOnHand": variant["count_on_hand"],
        "infiniteQuantity": variant["infinite_quantity"],
        "currency": variant["currency"].strip(),
        "price": {"amount": str(variant["price"]), "currencyCode": variant["currency"].strip()},
        "createdAt": variant["created_at"].isoformat(),
        "updatedAt": variant["updated_at"].isoformat(),
    }
    assert data["refundRequest"] == {
        "legacyId": refund["id"],
        "status": refund["status"].upper(),
        "reason": refund["reason"],
        "total": {"amount": str(refund["total"]), "currencyCode": refund["currency"].strip()},
        "invoice": {"legacyId": refund["invoice_id"]},
    }
