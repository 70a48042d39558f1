"""Compiling webhook queries to SQL, without a database: the plan the compiler makes from a merged
document (app.evaluation.sql), the statement the store renders from it (app.store.payload_sql),
what falls back and why, and the generated projection (app.evaluation.merge.projector). The
differential test against graphql-core is tests/integration/test_compiled_queries.py."""

from __future__ import annotations

import random

import pytest

from app.api.schema import schema
from app.config import Settings, SettingsError
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.merge import merge_queries, projector
from app.evaluation.sql import FIELDS, CompiledGroup, compile_group, fallback_reason
from app.policy.payload_plan import COLUMN, ENUM, GLOBAL_ID, TYPENAME, Leaf, MoneyOf, Obj, Relation, RootPlan
from app.store.payload_sql import statement
from app.types import EntityType


def compiled(text: str, entity_type: EntityType = EntityType.INVOICE) -> CompiledQuery:
    result = compile_query(schema, text, entity_type)
    assert isinstance(result, CompiledQuery), result
    return result


def group(*texts: str, entity_type: EntityType = EntityType.INVOICE) -> CompiledGroup:
    result = compile_group(schema, [compiled(t, entity_type) for t in texts])
    assert isinstance(result, CompiledGroup), result
    return result


def test_a_query_becomes_a_plan_of_the_merged_documents_fields() -> None:
    # given a query with an alias, a Money field and a to-one and a to-many relation
    g = group(
        "query($id: ID!) { node(id: $id) { ... on Invoice { s: status id total { formatted }"
        " seller { name } lineItems { quantity } } } }"
    )
    # then the root is the invoice itself, with the merged aliases as keys, in the query's order
    (root,) = g.plan.entries
    assert isinstance(root, Relation) and root.table == "invoices" and root.column == "id"
    entries = root.obj.entries
    assert entries[0] == Leaf("hq_t", TYPENAME, arg="Invoice")  # the merged document's own __typename
    assert entries[1:3] == (Leaf(entries[1].key, ENUM, "status"), Leaf(entries[2].key, GLOBAL_ID, "id", "Invoice"))
    total, seller, lines = entries[3:]
    assert isinstance(total, MoneyOf) and (total.amount, total.currency) == ("invoice_total", "own")
    assert isinstance(seller, Relation) and (seller.table, seller.column, seller.many) == (
        "sellers",
        "seller_id",
        False,
    )
    assert isinstance(lines, Relation) and (lines.table, lines.column, lines.many) == (
        "invoice_line_items",
        "invoice_id",
        True,
    )
    assert lines.obj == Obj("invoice_line_items", (Leaf(lines.obj.entries[0].key, COLUMN, "quantity"),))


def test_queries_sharing_fields_share_one_plan_entry() -> None:
    # given two webhooks' queries that select the same relation
    g = group(
        "query($id: ID!) { invoice(id: $id) { lineItems { quantity } } }",
        "query($id: ID!) { invoice(id: $id) { items: lineItems { status quantity } } }",
    )
    # then the statement selects the line items once, with both queries' fields
    (root,) = g.plan.entries
    assert isinstance(root, Relation)
    (lines,) = root.obj.entries
    assert isinstance(lines, Relation) and len(lines.obj.entries) == 2


def test_what_has_no_sql_form_falls_back_with_its_reason() -> None:
    # given a field table without Invoice.total, and without Shipment
    table = {**FIELDS, "Invoice": {k: v for k, v in FIELDS["Invoice"].items() if k != "total"}}
    del table["Shipment"]
    # then each query names what stops it, and one without either compiles
    total = compiled("query($id: ID!) { invoice(id: $id) { total { amount } } }")
    shipments = compiled("query($id: ID!) { invoice(id: $id) { shipments { carrier } } }")
    status = compiled("query($id: ID!) { invoice(id: $id) { status } }")
    assert fallback_reason(schema, total, table) == "Invoice.total has no SQL form"
    assert fallback_reason(schema, shipments, table) == "type Shipment is not compiled"
    assert fallback_reason(schema, status, table) is None
    # and with the real table, all three compile
    assert [fallback_reason(schema, q) for q in (total, shipments, status)] == [None, None, None]


# Fields of the marketplace types that fall back to graphql-core today (README, "Compiled
# queries"): the Marketplacer additions, not mapped yet. A field added to the schema shows up here.
NOT_COMPILED = {
    "Invoice": {"externalIds", "statusFlags", "subtotalCents", "subtotalFormatted", "totalCents", "totalFormatted"},
    "InvoiceAmendment": {"amountCents", "amountFormatted"},
    "InvoiceLineItem": {"totalCents", "totalFormatted", "unitPriceCents", "unitPriceFormatted", "variantId"},
    "Order": {"externalId", "externalIds", "total", "totalCents", "totalFormatted"},
    "RefundRequest": {"totalCents", "totalFormatted"},
    "RefundRequestLineItem": {"amountCents", "amountFormatted", "reason"},
    "Seller": {"businessName", "externalIds"},
    "Shipment": {"shippedItems", "trackingLink"},
    "ShipmentItem": {"lineItem"},
    "Variant": {
        "lowestPrice",
        "lowestPriceCents",
        "lowestPriceFormatted",
        "optionValues",
        "priceCents",
        "priceFormatted",
        "salePrice",
    },
}


def test_every_field_of_the_compiled_types_is_mapped_or_listed_as_falling_back() -> None:
    gql = schema._schema
    for type_name, fields in FIELDS.items():
        graphql_type = gql.get_type(type_name)
        unmapped = set(graphql_type.fields) - {"id"} - set(fields)  # type: ignore[union-attr]
        assert unmapped == NOT_COMPILED.get(type_name, set()), type_name


def test_the_statement_is_one_select_over_the_batchs_ids_with_the_viewers_seller() -> None:
    g = group(
        "query($id: ID!) { variant(id: $id) { sku product { seller { name } } } }", entity_type=EntityType.VARIANT
    )
    query = statement(g.plan)
    assert query.sql.startswith("SELECT ") and query.params == ("seller_id", "ids")
    # every lookup carries the loaders' visibility predicate: variant, product, seller
    assert query.sql.count("IS NULL OR") == 3


@pytest.mark.parametrize(
    "plan",
    [
        RootPlan("pg_authid", ()),  # a table outside the marketplace
        RootPlan("invoices", (Leaf("x'); DROP TABLE invoices; --", TYPENAME, arg="Query"),)),  # a key
        RootPlan(
            "invoices", (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("b", COLUMN, "id; --"),))),)
        ),
        RootPlan("invoices", (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("b", "raw", "id"),))),)),
        RootPlan(
            "invoices",
            (Relation("a", "invoices", "id", False, Obj("invoices", (MoneyOf("m", "pg_sleep(9)", "own", ()),))),),
        ),
        RootPlan(
            "invoices",
            (
                Relation(
                    "a",
                    "invoices",
                    "id",
                    False,
                    Obj("invoices", (Relation("c", "sellers", "id", True, Obj("sellers", ())),)),
                ),
            ),
        ),
        RootPlan(
            "invoices", (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("t", TYPENAME, arg="X'"),))),)
        ),
    ],
)
def test_a_plan_outside_the_whitelists_is_refused_never_rendered(plan: RootPlan) -> None:
    with pytest.raises(ValueError):
        statement(plan)


def test_the_generated_projection_equals_the_generic_walk() -> None:
    # given merged queries with aliases, fragments and the Node interface
    queries = [
        compiled("query($id: ID!) { node(id: $id) { __typename ... on Invoice { a: id lineItems { q: quantity } } } }"),
        compiled("query($id: ID!) { x: invoice(id: $id) { ...F } } fragment F on Invoice { lineItems { status } }"),
    ]
    merged = merge_queries(schema._schema, queries)
    assert merged is not None
    # and a merged result with lists, nulls and an entity that is missing
    rng = random.Random(3)
    for _ in range(50):
        lines = [{alias: rng.choice([1, "PAID", None]) for alias in ("f4", "f5", "f6", "f7")} for _ in range(3)]
        entity = {"hq_t": "Invoice", **{f"f{i}": rng.choice(["v", None, lines]) for i in range(10)}}
        data = {f"f{i}": rng.choice([entity, None]) for i in range(4)}
        for q in queries:
            try:
                expected = merged.project(q, data)
            except (KeyError, TypeError):
                continue  # random data that is not a merged result of these queries
            assert projector(merged.plans[q.text])(data) == expected


def test_the_setting_reads_true_and_false_and_refuses_the_rest() -> None:
    assert Settings().compiled_queries is True
    assert Settings.from_env({"HOOKQL_COMPILED_QUERIES": "off"}).compiled_queries is False
    assert Settings.from_env({"HOOKQL_COMPILED_QUERIES": "1"}).compiled_queries is True
    with pytest.raises(SettingsError, match="HOOKQL_COMPILED_QUERIES must be true or false"):
        Settings.from_env({"HOOKQL_COMPILED_QUERIES": "maybe"})
