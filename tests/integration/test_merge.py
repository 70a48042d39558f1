"""Merging webhook queries: one execution per entity, each webhook's payload cut out of it, equal
to what its own query returns (key order included). Real database, real schema."""

import json

import asyncpg
import pytest

from app.api.context import make_context
from app.api.schema import schema
from app.evaluation.budgets import Meter
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.execute import Budgets, evaluate, evaluate_many
from app.evaluation.merge import merge_queries
from app.policy.ids import encode as global_id
from app.types import OPERATOR, EntityType, Visibility

NO_LIMITS = Budgets(Meter(), time_ms=3_600_000, payload_bytes=2**31)  # budgets: test_evaluation_budgets.py


def compiled(query: str, entity_type: EntityType = EntityType.INVOICE) -> CompiledQuery:
    result = compile_query(schema, query, entity_type)
    assert isinstance(result, CompiledQuery), result
    return result


INVOICE_QUERIES = [
    # the bench's shape, with an alias on __typename
    "query($id: ID!) { node(id: $id) { ... on Invoice { a: __typename id status"
    " lineItems { quantity unitPrice { amount currencyCode } variant { sku } } total { amount formatted } } } }",
    # the same fields in another order, aliased differently, through a named fragment
    "query($id: ID!) { node(id: $id) { id ...F } } fragment F on Invoice { total { formatted amount }"
    " items: lineItems { variant { sku product { title } } q: quantity } status }",
    # the root field instead of node, reverse relations, nested owners
    "query($id: ID!) { invoice(id: $id) { legacyId seller { name products { title variants { sku } } }"
    " order { buyerName invoices { legacyId } } shipments { carrier items { quantity } } } }",
    # an interface-typed field without a type condition, and a condition that never applies
    "query($id: ID!) { node(id: $id) { __typename id ... on Invoice { ... on Node { id } } ... on Variant { sku } } }",
    # literal @skip / @include, and a field repeated with different sub-selections
    "query($id: ID!) { invoice(id: $id) { status @skip(if: true) currency @include(if: true)"
    " lineItems { quantity } lineItems { status } refundRequests { status lineItems { quantity } } } }",
    # a top-level __typename beside the entity
    "query($id: ID!) { __typename invoice(id: $id) { amendments { reason amount { amount } } subtotal { amount } } }",
]


async def some_ids(pool: asyncpg.Pool, table: str, limit: int, seller_id: int | None = None) -> list[int]:
    join = "" if table == "invoices" else " JOIN invoices i ON i.id = t.invoice_id"
    seller = "t.seller_id" if table == "invoices" else "i.seller_id"
    rows = await pool.fetch(
        f"SELECT t.id FROM {table} t{join} WHERE $1::bigint IS NULL OR {seller} = $1 ORDER BY t.id LIMIT $2",
        seller_id,
        limit,
    )
    return [r["id"] for r in rows]


@pytest.mark.parametrize("visibility", [OPERATOR, Visibility(1)])
async def test_each_payload_equals_its_own_querys_result_key_order_included(
    fixture_pool: asyncpg.Pool, visibility: Visibility
) -> None:
    # given several different invoice queries and invoices of several sellers, one missing
    queries = [compiled(q) for q in INVOICE_QUERIES]
    ids = await some_ids(fixture_pool, "invoices", 12)
    gids = [global_id("Invoice", i) for i in ids] + [global_id("Invoice", 10**9)]
    # when they are evaluated merged
    merged = await evaluate_many(schema, make_context(fixture_pool, visibility), queries, gids, NO_LIMITS)
    # then every payload is exactly what the query alone gives, as JSON text (so in key order)
    for q in queries:
        alone = await evaluate(schema, make_context(fixture_pool, visibility), q, gids)
        assert [json.dumps(p) for p in merged[q]] == [json.dumps(p) for p in alone]
    assert merged[queries[0]][-1] == {"data": {"node": None}}


async def test_refund_requests_and_variants_merge_too(fixture_pool: asyncpg.Pool) -> None:
    # given refund request queries that overlap partly
    refunds = [
        compiled(q, EntityType.REFUND_REQUEST)
        for q in (
            "query($id: ID!) { refundRequest(id: $id) { status total { amount } lineItems { quantity } } }",
            "query($id: ID!) { node(id: $id) { ... on RefundRequest { reason invoice { status }"
            " lineItems { amount { amount currencyCode } invoiceLineItem { quantity } } } } }",
        )
    ]
    gids = [global_id("RefundRequest", i) for i in await some_ids(fixture_pool, "refund_requests", 5)]
    merged = await evaluate_many(schema, make_context(fixture_pool, OPERATOR), refunds, gids, NO_LIMITS)
    for q in refunds:
        assert merged[q] == await evaluate(schema, make_context(fixture_pool, OPERATOR), q, gids)
    assert all(p["data"]["refundRequest"] is not None for p in merged[refunds[0]])


async def test_one_execution_serves_every_query_of_the_batch(fixture_pool: asyncpg.Pool) -> None:
    # given 30 webhooks whose queries differ only by an alias, and 20 invoices
    queries = [compiled(INVOICE_QUERIES[0].replace("a: __typename", f"w{i}: __typename")) for i in range(30)]
    gids = [global_id("Invoice", i) for i in await some_ids(fixture_pool, "invoices", 20)]
    context = make_context(fixture_pool, OPERATOR)
    # when they are evaluated together
    merged = await evaluate_many(schema, context, queries, gids, NO_LIMITS)
    # then the merged document asks for the shared fields once, each payload keeps its own alias,
    # and the loaders ran the statements of one query, not of thirty
    document = merge_queries(schema._schema, queries)
    assert document is not None
    for i, q in enumerate(queries):
        assert all(p["data"]["node"][f"w{i}"] == "Invoice" for p in merged[q])
    assert context.loaders.statements <= 6


async def test_an_entity_whose_merged_run_fails_is_evaluated_query_by_query(fixture_pool: asyncpg.Pool) -> None:
    # given a database the line-item loader cannot read, and two queries of which one needs it
    gids = [global_id("Invoice", i) for i in await some_ids(fixture_pool, "invoices", 2)]
    await fixture_pool.execute("ALTER TABLE invoice_line_items RENAME COLUMN quantity TO qty")
    needs = compiled("query($id: ID!) { invoice(id: $id) { status lineItems { quantity } } }")
    spared = compiled("query($id: ID!) { invoice(id: $id) { status currency } }")
    # when both are evaluated merged
    merged = await evaluate_many(schema, make_context(fixture_pool, OPERATOR), [needs, spared], gids, NO_LIMITS)
    # then the one that reads line items carries its own error and path, the other has none
    for payload in merged[needs]:
        [error] = payload["errors"]
        assert error["path"][:2] == ["invoice", "lineItems"]
    assert all("errors" not in p and p["data"]["invoice"]["status"] for p in merged[spared])
