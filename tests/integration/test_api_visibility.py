"""A seller key sees only its own marketplace data, by every path; another seller's object is
indistinguishable from a missing one (SPEC §2)."""

from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.ids import to_global_id
from app.api.pagination import encode_cursor
from app.api.schema import schema
from app.config import Settings
from app.types import OPERATOR, Visibility

ME = Visibility(1)
# Walking every relation of 100 objects per list, 9 levels deep, is estimated at ~190,000 objects
# and values, over a seller's default limits: these tests are about what a seller sees, not what
# it may ask.
WALK_EVERYTHING = Settings(seller_max_cost=1_000_000, seller_max_depth=12)
UNKNOWN_ID = 987_654_321

# GraphQL type -> SQL selecting one row that belongs to seller 2 (never to seller 1)
FOREIGN = {
    "Seller": "SELECT 2",
    "Product": "SELECT id FROM products WHERE seller_id = 2 ORDER BY id LIMIT 1",
    "Variant": "SELECT v.id FROM variants v JOIN products p ON p.id = v.product_id WHERE p.seller_id = 2 LIMIT 1",
    "Order": "SELECT order_id FROM invoices GROUP BY order_id HAVING bool_and(seller_id = 2) LIMIT 1",
    "Invoice": "SELECT id FROM invoices WHERE seller_id = 2 ORDER BY id LIMIT 1",
    "InvoiceLineItem": "SELECT l.id FROM invoice_line_items l JOIN invoices i ON i.id = l.invoice_id "
    "WHERE i.seller_id = 2 LIMIT 1",
    "Shipment": "SELECT s.id FROM shipments s JOIN invoices i ON i.id = s.invoice_id WHERE i.seller_id = 2 LIMIT 1",
    "ShipmentItem": "SELECT si.id FROM shipment_items si JOIN shipments s ON s.id = si.shipment_id "
    "JOIN invoices i ON i.id = s.invoice_id WHERE i.seller_id = 2 LIMIT 1",
    "InvoiceAmendment": "SELECT a.id FROM invoice_amendments a JOIN invoices i ON i.id = a.invoice_id "
    "WHERE i.seller_id = 2 LIMIT 1",
    "RefundRequest": "SELECT r.id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id "
    "WHERE i.seller_id = 2 LIMIT 1",
    "RefundRequestLineItem": "SELECT rl.id FROM refund_request_line_items rl "
    "JOIN refund_requests r ON r.id = rl.refund_request_id JOIN invoices i ON i.id = r.invoice_id "
    "WHERE i.seller_id = 2 LIMIT 1",
}


async def execute(
    pool: asyncpg.Pool, query: str, visibility: Visibility, settings: Settings | None = None, **variables: Any
) -> dict[str, Any]:
    context = make_context(pool, visibility, settings)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


async def foreign_ids(pool: asyncpg.Pool) -> dict[str, int]:
    ids = {type_name: await pool.fetchval(sql) for type_name, sql in FOREIGN.items()}
    assert all(ids.values()), ids  # the fixtures hold seller 2's objects of every type
    return ids


@pytest.mark.parametrize("type_name", list(FOREIGN))
async def test_a_foreign_node_looks_exactly_like_an_unknown_one(fixture_pool: asyncpg.Pool, type_name: str) -> None:
    # given an object of seller 2, and an id nobody has
    foreign = to_global_id(type_name, (await foreign_ids(fixture_pool))[type_name])
    unknown = to_global_id(type_name, UNKNOWN_ID)
    query = "query($id: ID!) { node(id: $id) { __typename id } nodes(ids: [$id, $id]) { id } }"

    # when seller 1 asks for either
    seen_foreign = await execute(fixture_pool, query, ME, id=foreign)
    seen_unknown = await execute(fixture_pool, query, ME, id=unknown)

    # then both answers are the same null, while the operator does see the object
    assert seen_foreign == seen_unknown == {"node": None, "nodes": [None, None]}
    seen_by_operator = await execute(fixture_pool, query, OPERATOR, id=foreign)
    assert seen_by_operator["node"] == {"__typename": type_name, "id": foreign}


async def test_root_fields_treat_foreign_entities_as_missing(fixture_pool: asyncpg.Pool) -> None:
    ids = await foreign_ids(fixture_pool)
    query = """query($inv: ID!, $var: ID!, $rr: ID!) {
      invoice(id: $inv) { id } variant(id: $var) { id } refundRequest(id: $rr) { id } }"""
    foreign = {
        "inv": to_global_id("Invoice", ids["Invoice"]),
        "var": to_global_id("Variant", ids["Variant"]),
        "rr": to_global_id("RefundRequest", ids["RefundRequest"]),
    }
    unknown = {
        "inv": to_global_id("Invoice", UNKNOWN_ID),
        "var": to_global_id("Variant", UNKNOWN_ID),
        "rr": to_global_id("RefundRequest", UNKNOWN_ID),
    }

    seen_foreign = await execute(fixture_pool, query, ME, **foreign)
    assert seen_foreign == await execute(fixture_pool, query, ME, **unknown)
    assert seen_foreign == {"invoice": None, "variant": None, "refundRequest": None}
    assert all(await execute(fixture_pool, query, OPERATOR, **foreign))


async def test_lists_and_reverse_relations_hold_only_own_objects(fixture_pool: asyncpg.Pool) -> None:
    # when seller 1 walks every list and every relation that leads to a seller
    data = await execute(
        fixture_pool,
        """{
          invoices(first: 100) { edges { node { seller { legacyId products { variants { product {
              seller { legacyId } } } } }
            order { invoices { seller { legacyId } } }
            lineItems { variant { product { seller { legacyId } } } } } } }
          variants(first: 100) { edges { node { product { seller { legacyId } } } } }
          refundRequests(first: 100) { edges { node { invoice { seller { legacyId } }
            lineItems { invoiceLineItem { invoice { seller { legacyId } } } } } } }
        }""",
        ME,
        WALK_EVERYTHING,
    )
    invoices = [e["node"] for e in data["invoices"]["edges"]]

    # then every seller reached is seller 1, and every own object is there
    reached = {i["seller"]["legacyId"] for i in invoices}
    reached |= {
        v["product"]["seller"]["legacyId"] for i in invoices for p in i["seller"]["products"] for v in p["variants"]
    }
    reached |= {o["seller"]["legacyId"] for i in invoices for o in i["order"]["invoices"]}
    reached |= {li["variant"]["product"]["seller"]["legacyId"] for i in invoices for li in i["lineItems"]}
    reached |= {e["node"]["product"]["seller"]["legacyId"] for e in data["variants"]["edges"]}
    reached |= {e["node"]["invoice"]["seller"]["legacyId"] for e in data["refundRequests"]["edges"]}
    reached |= {
        li["invoiceLineItem"]["invoice"]["seller"]["legacyId"]
        for e in data["refundRequests"]["edges"]
        for li in e["node"]["lineItems"]
    }
    assert reached == {1}
    assert len(invoices) == await fixture_pool.fetchval("SELECT count(*) FROM invoices WHERE seller_id = 1")
    assert len(data["variants"]["edges"]) == await fixture_pool.fetchval(
        "SELECT count(*) FROM variants v JOIN products p ON p.id = v.product_id WHERE p.seller_id = 1"
    )


async def test_a_shared_order_shows_a_seller_only_its_own_invoices(fixture_pool: asyncpg.Pool) -> None:
    # given an order with invoices of seller 1 and of other sellers
    order_id = await fixture_pool.fetchval(
        "SELECT order_id FROM invoices GROUP BY order_id "
        "HAVING bool_or(seller_id = 1) AND bool_or(seller_id <> 1) ORDER BY order_id LIMIT 1"
    )
    query = "query($id: ID!) { node(id: $id) { ... on Order { invoices { seller { legacyId } } } } }"

    # when seller 1 and the operator look at it
    mine = await execute(fixture_pool, query, ME, id=to_global_id("Order", order_id))
    everyone = await execute(fixture_pool, query, OPERATOR, id=to_global_id("Order", order_id))

    # then the seller sees the order, holding only its own invoices
    assert {i["seller"]["legacyId"] for i in mine["node"]["invoices"]} == {1}
    assert len({i["seller"]["legacyId"] for i in everyone["node"]["invoices"]}) > 1


async def test_rows_that_point_across_sellers_do_not_leak(fixture_pool: asyncpg.Pool) -> None:
    # given plain SQL that links seller 1's invoice to seller 2's variant and line item
    ids = await foreign_ids(fixture_pool)
    own_invoice = await fixture_pool.fetchval("SELECT id FROM invoices WHERE seller_id = 1 ORDER BY id LIMIT 1")
    async with fixture_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price) VALUES ($1, $2, 1, 9.99)",
            own_invoice,
            ids["Variant"],
        )
        shipment = await conn.fetchval(
            "INSERT INTO shipments (invoice_id, carrier) VALUES ($1, 'ups') RETURNING id", own_invoice
        )
        await conn.execute(
            "INSERT INTO shipment_items (shipment_id, invoice_line_item_id, quantity) VALUES ($1, $2, 1)",
            shipment,
            ids["InvoiceLineItem"],
        )

    # when seller 1 reads its invoice
    data = await execute(
        fixture_pool,
        "query($id: ID!) { invoice(id: $id) { lineItems { variant { sku } } "
        "shipments { items { invoiceLineItem { id } } } } }",
        ME,
        id=to_global_id("Invoice", own_invoice),
    )

    # then the foreign variant and line item are null, like missing ones
    assert data["invoice"]["lineItems"][-1] == {"variant": None}
    assert data["invoice"]["shipments"][-1] == {"items": [{"invoiceLineItem": None}]}


async def test_nodes_mixes_own_foreign_and_unknown_in_order(fixture_pool: asyncpg.Pool) -> None:
    # given one own object of each webhook type, the same types of seller 2, and unknown ids
    own = {
        "Invoice": await fixture_pool.fetchval("SELECT id FROM invoices WHERE seller_id = 1 ORDER BY id LIMIT 1"),
        "Variant": await fixture_pool.fetchval(
            "SELECT v.id FROM variants v JOIN products p ON p.id = v.product_id WHERE p.seller_id = 1 LIMIT 1"
        ),
        "RefundRequest": await fixture_pool.fetchval(
            "SELECT r.id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id WHERE i.seller_id = 1 LIMIT 1"
        ),
        "Seller": 1,
        "Product": await fixture_pool.fetchval("SELECT id FROM products WHERE seller_id = 1 LIMIT 1"),
    }
    foreign = await foreign_ids(fixture_pool)
    asked = []
    for type_name, id_ in own.items():
        asked += [
            to_global_id(type_name, id_),
            to_global_id(type_name, foreign[type_name]),
            to_global_id(type_name, UNKNOWN_ID),
        ]

    # when seller 1 asks for all of them at once
    data = await execute(fixture_pool, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ME, ids=asked)

    # then only its own come back, in place; foreign and unknown are both null
    expected = []
    for type_name, id_ in own.items():
        expected += [{"id": to_global_id(type_name, id_)}, None, None]
    assert data["nodes"] == expected


async def test_a_cursor_at_a_foreign_row_reveals_nothing(fixture_pool: asyncpg.Pool) -> None:
    # a seller crafting a cursor at seller 2's invoice just continues with its own invoices after it
    foreign = (await foreign_ids(fixture_pool))["Invoice"]
    data = await execute(
        fixture_pool,
        "query($a: String) { invoices(first: 100, after: $a) { nodes { legacyId } } }",
        ME,
        a=encode_cursor(foreign),
    )
    assert [n["legacyId"] for n in data["invoices"]["nodes"]] == [
        r["id"]
        for r in await fixture_pool.fetch(
            "SELECT id FROM invoices WHERE seller_id = 1 AND id > $1 ORDER BY id LIMIT 100", foreign
        )
    ]


async def test_a_refund_line_pointing_at_a_foreign_line_item_does_not_leak(fixture_pool: asyncpg.Pool) -> None:
    # given seller 1's refund request with a line that plain SQL pointed at seller 2's line item
    ids = await foreign_ids(fixture_pool)
    own_refund = await fixture_pool.fetchval(
        "SELECT r.id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id WHERE i.seller_id = 1 LIMIT 1"
    )
    line = await fixture_pool.fetchval(
        "INSERT INTO refund_request_line_items (refund_request_id, invoice_line_item_id, quantity, amount) "
        "VALUES ($1, $2, 1, 1.00) RETURNING id",
        own_refund,
        ids["InvoiceLineItem"],
    )
    query = """query($r: ID!, $l: ID!) {
      refundRequest(id: $r) { lineItems { legacyId invoiceLineItem { id variant { sku } invoice { id } } } }
      node(id: $l) { ... on RefundRequestLineItem { invoiceLineItem { id } } } }"""
    data = await execute(
        fixture_pool,
        query,
        ME,
        r=to_global_id("RefundRequest", own_refund),
        l=to_global_id("RefundRequestLineItem", line),
    )
    [added] = [li for li in data["refundRequest"]["lineItems"] if li["legacyId"] == line]
    assert added["invoiceLineItem"] is None
    assert data["node"] == {"invoiceLineItem": None}


async def test_a_seller_that_does_not_exist_sees_nothing(fixture_pool: asyncpg.Pool) -> None:
    nobody = Visibility(UNKNOWN_ID)
    data = await execute(
        fixture_pool,
        "{ invoices { nodes { id } } variants { nodes { id } } refundRequests { nodes { id } } "
        'node(id: "SW52b2ljZTox") { id } webhooks { id } }',
        nobody,
    )
    assert data == {
        "invoices": {"nodes": []},
        "variants": {"nodes": []},
        "refundRequests": {"nodes": []},
        "node": None,
        "webhooks": [],
    }
