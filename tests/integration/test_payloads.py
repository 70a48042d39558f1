"""Running a compiled webhook query for a batch of entities: one shared context, real database."""

import asyncpg
import pytest

from app.api.context import make_context
from app.api.schema import schema
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.execute import evaluate
from app.policy.ids import encode as global_id
from app.types import OPERATOR, EntityType, Visibility

RICH = """query($id: ID!) { node(id: $id) { ... on Invoice {
  id status seller { name } total { amount currencyCode }
  lineItems { quantity variant { sku product { title } } } shipments { items { quantity } }
} } }"""


def compiled(query: str, entity_type: EntityType = EntityType.INVOICE) -> CompiledQuery:
    result = compile_query(schema, query, entity_type)
    assert isinstance(result, CompiledQuery), result
    return result


async def invoice_ids(pool: asyncpg.Pool, limit: int, seller_id: int | None = None) -> list[int]:
    rows = await pool.fetch(
        "SELECT id FROM invoices WHERE $1::bigint IS NULL OR seller_id = $1 ORDER BY id LIMIT $2", seller_id, limit
    )
    return [r["id"] for r in rows]


@pytest.mark.parametrize("count", [5, 80])
async def test_a_batch_shares_one_context_so_statements_do_not_grow_with_entities(
    fixture_pool: asyncpg.Pool, count: int
) -> None:
    # given `count` invoices and one context for the batch
    ids = await invoice_ids(fixture_pool, count)
    context = make_context(fixture_pool, OPERATOR)
    # when the query runs for all of them at once
    payloads = await evaluate(schema, context, compiled(RICH), [global_id("Invoice", i) for i in ids])
    # then each payload is its own invoice, in order, and the batch cost a fixed handful of statements
    assert [p["data"]["node"]["id"] for p in payloads] == [global_id("Invoice", i) for i in ids]
    assert all("errors" not in p for p in payloads)
    assert context.loaders.statements <= 10


async def test_a_batch_gives_what_one_request_gives(fixture_pool: asyncpg.Pool) -> None:
    # given an invoice, evaluated in a batch and alone through the API's own execute
    [invoice] = await invoice_ids(fixture_pool, 1)
    gid = global_id("Invoice", invoice)
    [batched] = await evaluate(schema, make_context(fixture_pool, OPERATOR), compiled(RICH), [gid])
    alone = await schema.execute(RICH, variable_values={"id": gid}, context_value=make_context(fixture_pool, OPERATOR))
    # then the payloads are the same data
    assert batched == {"data": alone.data}


async def test_a_missing_or_deleted_entity_is_a_null_node(fixture_pool: asyncpg.Pool) -> None:
    # given an invoice that is deleted, and one that never existed
    [invoice] = await invoice_ids(fixture_pool, 1)
    await fixture_pool.execute("DELETE FROM invoices WHERE id = $1", invoice)
    gids = [global_id("Invoice", invoice), global_id("Invoice", 10**9)]
    # when they are evaluated
    payloads = await evaluate(schema, make_context(fixture_pool, OPERATOR), compiled(RICH), gids)
    # then each payload is the query's answer for a missing node, without errors
    assert payloads == [{"data": {"node": None}}, {"data": {"node": None}}]


async def test_another_sellers_entity_is_invisible(fixture_pool: asyncpg.Pool) -> None:
    # given an invoice of seller 2 and one of seller 1, evaluated with seller 1's visibility
    [theirs] = await invoice_ids(fixture_pool, 1, seller_id=2)
    [mine] = await invoice_ids(fixture_pool, 1, seller_id=1)
    query = compiled("query($id: ID!) { invoice(id: $id) { legacyId seller { legacyId } } }")
    gids = [global_id("Invoice", theirs), global_id("Invoice", mine)]
    # when both are evaluated
    payloads = await evaluate(schema, make_context(fixture_pool, Visibility(1)), query, gids)
    # then the foreign one is indistinguishable from a missing one
    assert payloads == [
        {"data": {"invoice": None}},
        {"data": {"invoice": {"legacyId": mine, "seller": {"legacyId": 1}}}},
    ]


async def test_resolver_errors_are_delivered_not_swallowed(fixture_pool: asyncpg.Pool) -> None:
    # given a database the line-item loader cannot read any more
    ids = await invoice_ids(fixture_pool, 2)
    await fixture_pool.execute("ALTER TABLE invoice_line_items RENAME COLUMN quantity TO qty")
    query = compiled("query($id: ID!) { invoice(id: $id) { status lineItems { quantity } } }")
    # when invoices are evaluated
    gids = [global_id("Invoice", i) for i in ids]
    payloads = await evaluate(schema, make_context(fixture_pool, OPERATOR), query, gids)
    # then each payload carries the data it could get and the formatted errors, with their paths
    for payload in payloads:
        assert payload["data"] == {"invoice": None} or payload["data"]["invoice"]["lineItems"] is None
        [error] = payload["errors"]
        assert "quantity" in error["message"] and error["path"][:2] == ["invoice", "lineItems"]
        assert set(error) >= {"message", "locations", "path"}
