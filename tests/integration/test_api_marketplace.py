"""The marketplace read API against the whole fixture marketplace: camelCase names only, money and
enums against SQL, every computed total checked against SQL sums, reverse relations, Relay
pagination of every list and node lookups (basic fields, bad arguments and batching:
test_api_read.py; visibility: test_api_visibility.py)."""

import base64
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.schema import schema
from app.config import Settings
from app.types import OPERATOR, Visibility


async def execute(
    pool: asyncpg.Pool, query: str, visibility: Visibility = OPERATOR, **variables: Any
) -> tuple[dict[str, Any] | None, list[str]]:
    """(data, error messages) of one in-process request."""
    result = await schema.execute(
        query, variable_values=variables, context_value=make_context(pool, visibility, Settings())
    )
    return result.data, [e.message for e in result.errors or []]


async def data_of(pool: asyncpg.Pool, query: str, visibility: Visibility = OPERATOR, **variables: Any) -> Any:
    data, errors = await execute(pool, query, visibility, **variables)
    assert errors == [], errors
    assert data is not None
    return data


def gid(type_name: str, id_: int) -> str:
    return to_global_id(type_name, id_)


# --- fields, names, values -------------------------------------------------------------------


async def test_the_schema_names_columns_in_camel_case_only(fixture_pool: asyncpg.Pool) -> None:
    # snake_case names are not fields: the client gets a validation error, not data
    data, errors = await execute(fixture_pool, "{ invoices(first: 1) { edges { node { legacy_id } } } }")
    assert data is None and "Cannot query field 'legacy_id'" in errors[0]
    sdl = schema.as_str()
    for name in ("trackingNumber", "buyerName", "countOnHand", "infiniteQuantity", "unitPrice", "invoiceLineItem"):
        assert f"  {name}" in sdl
    assert "_" not in "".join(
        line.split(":")[0] for line in sdl.splitlines() if line.startswith("  ") and ":" in line and "(" not in line
    )


async def test_variant_money_and_every_status_enum_match_sql(fixture_pool: asyncpg.Pool) -> None:
    # when every variant's price is read
    data = await data_of(
        fixture_pool, "{ variants(first: 100) { edges { node { legacyId price { amount currencyCode } currency } } } }"
    )
    rows = {
        r["id"]: r for r in await fixture_pool.fetch("SELECT id, price, currency FROM variants ORDER BY id LIMIT 100")
    }

    # then each price is exactly the numeric(12,2) column, as a string
    for edge in data["variants"]["edges"]:
        node, row = edge["node"], rows[edge["node"]["legacyId"]]
        assert node["price"] == {"amount": str(row["price"]), "currencyCode": row["currency"].strip()}
        assert isinstance(node["price"]["amount"], str) and node["currency"] == row["currency"].strip()

    # and statuses present in the database appear as their enum names
    statuses = await data_of(fixture_pool, "{ invoices(first: 100) { nodes { legacyId status } } }")
    db_status = dict(await fixture_pool.fetch("SELECT id, status FROM invoices ORDER BY id LIMIT 100"))
    assert {n["status"] for n in statuses["invoices"]["nodes"]} == {s.upper() for s in db_status.values()}
    assert all(n["status"] == db_status[n["legacyId"]].upper() for n in statuses["invoices"]["nodes"])


async def test_every_invoice_subtotal_and_total_equal_the_sql_sums(fixture_pool: asyncpg.Pool) -> None:
    # given the sums as PostgreSQL computes them
    expected = {
        r["id"]: r
        for r in await fixture_pool.fetch(
            "SELECT i.id, i.currency, "
            "coalesce((SELECT sum(quantity * unit_price) FROM invoice_line_items WHERE invoice_id = i.id), 0) AS sub, "
            "coalesce((SELECT sum(amount) FROM invoice_amendments WHERE invoice_id = i.id), 0) AS adj "
            "FROM invoices i"
        )
    }
    assert any(r["adj"] != 0 for r in expected.values()), "the fixtures hold amendments"

    # when every invoice's totals are read, page by page
    seen: dict[int, Any] = {}
    after = None
    while True:
        data = await data_of(
            fixture_pool,
            "query($after: String) { invoices(first: 100, after: $after) { nodes { legacyId "
            "subtotal { amount currencyCode } total { amount currencyCode } } "
            "pageInfo { hasNextPage endCursor } } }",
            after=after,
        )
        seen |= {n["legacyId"]: n for n in data["invoices"]["nodes"]}
        if not data["invoices"]["pageInfo"]["hasNextPage"]:
            break
        after = data["invoices"]["pageInfo"]["endCursor"]

    # then subtotal = Σ quantity × unit price and total = subtotal + Σ amendments, to the cent
    assert seen.keys() == expected.keys()
    for id_, node in seen.items():
        row = expected[id_]
        assert Decimal(node["subtotal"]["amount"]) == row["sub"]
        assert Decimal(node["total"]["amount"]) == row["sub"] + row["adj"]
        assert node["total"]["amount"] == f"{row['sub'] + row['adj']:.2f}"
        assert node["subtotal"]["currencyCode"] == node["total"]["currencyCode"] == row["currency"].strip()


async def test_refund_request_total_is_the_sum_of_its_line_items(fixture_pool: asyncpg.Pool) -> None:
    expected = {
        r["id"]: r
        for r in await fixture_pool.fetch(
            "SELECT r.id, i.currency, coalesce(sum(l.amount), 0) AS total, count(l.id) AS lines "
            "FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id "
            "LEFT JOIN refund_request_line_items l ON l.refund_request_id = r.id GROUP BY r.id, i.currency"
        )
    }
    data = await data_of(
        fixture_pool,
        "{ refundRequests(first: 100) { nodes { legacyId status total { amount currencyCode } "
        "lineItems { amount { amount currencyCode } invoiceLineItem { invoice { legacyId } } } "
        "invoice { legacyId } } } }",
    )
    nodes = data["refundRequests"]["nodes"]
    assert nodes and len(nodes) == min(100, len(expected))
    for node in nodes:
        row = expected[node["legacyId"]]
        assert node["total"] == {"amount": f"{row['total']:.2f}", "currencyCode": row["currency"].strip()}
        assert len(node["lineItems"]) == row["lines"]
        assert sum((Decimal(li["amount"]["amount"]) for li in node["lineItems"]), Decimal(0)) == row["total"]
        # a refund line item refers to a line item of the refund's own invoice
        assert all(li["invoiceLineItem"]["invoice"] == node["invoice"] for li in node["lineItems"])


async def test_reverse_relations_seller_products_variants_and_order_invoices(fixture_pool: asyncpg.Pool) -> None:
    seller = await fixture_pool.fetchval("SELECT id FROM sellers ORDER BY id LIMIT 1")
    data = await data_of(
        fixture_pool,
        "query($id: ID!) { node(id: $id) { ... on Seller { name products { legacyId title description "
        "seller { legacyId } variants { legacyId sku product { legacyId } } } } } }",
        id=gid("Seller", seller),
    )
    products = data["node"]["products"]
    assert [p["legacyId"] for p in products] == [
        r["id"] for r in await fixture_pool.fetch("SELECT id FROM products WHERE seller_id = $1 ORDER BY id", seller)
    ]
    variants = await fixture_pool.fetch(
        "SELECT v.id, v.product_id FROM variants v JOIN products p ON p.id = v.product_id "
        "WHERE p.seller_id = $1 ORDER BY v.id",
        seller,
    )
    assert sorted(v["legacyId"] for p in products for v in p["variants"]) == [v["id"] for v in variants]
    assert all(v["product"]["legacyId"] == p["legacyId"] for p in products for v in p["variants"])
    assert all(p["seller"]["legacyId"] == seller for p in products)


# --- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "table"), [("invoices", "invoices"), ("variants", "variants"), ("refundRequests", "refund_requests")]
)
async def test_first_after_walk_each_list_in_id_order_exactly_once(
    fixture_pool: asyncpg.Pool, field: str, table: str
) -> None:
    all_ids = [r["id"] for r in await fixture_pool.fetch(f"SELECT id FROM {table} ORDER BY id")]
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        data = await data_of(
            fixture_pool,
            f"query($after: String) {{ {field}(first: 37, after: $after) {{ "
            "edges { cursor node { legacyId } } pageInfo { hasNextPage endCursor } } }",
            after=after,
        )
        page = data[field]
        pages += 1
        ids = [e["node"]["legacyId"] for e in page["edges"]]
        seen += ids
        # the end cursor is the last edge's cursor
        assert page["pageInfo"]["endCursor"] == (page["edges"][-1]["cursor"] if ids else None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert len(ids) == 37
        after = page["pageInfo"]["endCursor"]
    assert seen == all_ids
    assert pages in (-(-len(all_ids) // 37), len(all_ids) // 37 + 1)


async def test_default_page_first_zero_and_an_exact_last_page(fixture_pool: asyncpg.Pool) -> None:
    total = await fixture_pool.fetchval("SELECT count(*) FROM invoices")
    last_id = await fixture_pool.fetchval("SELECT max(id) FROM invoices")
    data = await data_of(fixture_pool, "{ invoices { edges { cursor } pageInfo { hasNextPage } } }")
    assert len(data["invoices"]["edges"]) == 20 and data["invoices"]["pageInfo"]["hasNextPage"] is True

    data = await data_of(fixture_pool, "{ invoices(first: 0) { edges { cursor } pageInfo { hasNextPage endCursor } } }")
    assert data["invoices"] == {"edges": [], "pageInfo": {"hasNextPage": True, "endCursor": None}}

    # a page that ends exactly at the last invoice has no next page
    before_last = await fixture_pool.fetchval("SELECT id FROM invoices ORDER BY id DESC OFFSET 3 LIMIT 1")
    first_page = await data_of(fixture_pool, "{ invoices(first: 1) { edges { cursor node { legacyId } } } }")
    cursor = first_page["invoices"]["edges"][0]["cursor"]
    # cursors are opaque but stable: the cursor of the invoice before the last three ends the walk in three
    assert base64.b64decode(cursor).decode().startswith("cursor:")
    after = base64.b64encode(f"cursor:{before_last}".encode()).decode()
    data = await data_of(
        fixture_pool,
        "query($a: String) { invoices(first: 3, after: $a) { nodes { legacyId } pageInfo { hasNextPage } } }",
        a=after,
    )
    assert data["invoices"]["pageInfo"]["hasNextPage"] is False
    assert data["invoices"]["nodes"][-1]["legacyId"] == last_id and total > 3


# --- node / nodes ----------------------------------------------------------------------------

NODE_SQL = {
    "Seller": "SELECT id FROM sellers",
    "Product": "SELECT id FROM products",
    "Variant": "SELECT id FROM variants",
    "Order": "SELECT id FROM orders",
    "Invoice": "SELECT id FROM invoices",
    "InvoiceLineItem": "SELECT id FROM invoice_line_items",
    "Shipment": "SELECT id FROM shipments",
    "ShipmentItem": "SELECT id FROM shipment_items",
    "InvoiceAmendment": "SELECT id FROM invoice_amendments",
    "RefundRequest": "SELECT id FROM refund_requests",
    "RefundRequestLineItem": "SELECT id FROM refund_request_line_items",
}


async def test_node_and_nodes_resolve_every_type_in_order(fixture_pool: asyncpg.Pool) -> None:
    # given one object of every Node type
    ids = {t: await fixture_pool.fetchval(sql + " ORDER BY id DESC LIMIT 1") for t, sql in NODE_SQL.items()}
    assert all(ids.values()), ids
    globals_ = [gid(t, i) for t, i in ids.items()]

    # when each is fetched by node, and all together (reversed, with a miss between) by nodes
    for type_name, id_ in ids.items():
        data = await data_of(
            fixture_pool,
            "query($id: ID!) { node(id: $id) { __typename id ... on Invoice { legacyId } } }",
            id=gid(type_name, id_),
        )
        assert data["node"]["__typename"] == type_name and data["node"]["id"] == gid(type_name, id_)
    asked = [*reversed(globals_), gid("Invoice", 999_999_999), globals_[0]]
    data = await data_of(fixture_pool, "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }", ids=asked)

    # then nodes answers in the order asked, null where missing
    assert [n and n["id"] for n in data["nodes"]] == [*reversed(globals_), None, globals_[0]]
    assert [n["__typename"] for n in data["nodes"] if n] == [*reversed(list(ids)), "Seller"]


async def test_nodes_takes_at_most_100_ids(fixture_pool: asyncpg.Pool) -> None:
    ids = [gid("Invoice", i) for i in range(1, 102)]
    data, errors = await execute(fixture_pool, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=ids)
    assert data is None and errors == ["`ids` takes at most 100 IDs, got 101"]


async def test_a_root_field_refuses_another_types_id(fixture_pool: asyncpg.Pool) -> None:
    # Variant:1 and RefundRequest:1 exist, but invoice(id) only accepts an Invoice's id
    data = await data_of(
        fixture_pool,
        "query($v: ID!, $r: ID!, $i: ID!) { a: invoice(id: $v) { id } b: variant(id: $r) { id } "
        "c: refundRequest(id: $i) { id } d: invoice(id: $i) { id } e: variant(id: $v) { id } }",
        v=gid("Variant", 1),
        r=gid("RefundRequest", 1),
        i=gid("Invoice", 1),
    )
    assert data == {"a": None, "b": None, "c": None, "d": {"id": gid("Invoice", 1)}, "e": {"id": gid("Variant", 1)}}
