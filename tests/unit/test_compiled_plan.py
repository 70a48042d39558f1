"""Compiling webhook queries to SQL, without a database: the plan the compiler makes from a merged
document (app.evaluation.sql), the statement the store renders from it (app.store.payload_sql),
what falls back and why, and the generated projection (app.evaluation.merge.projector). The
differential test against graphql-core is tests/integration/test_compiled_queries.py."""

from __future__ import annotations

import random

import pytest
from graphql import GraphQLObjectType, get_named_type

from app.api.schema import schema
from app.config import Settings, SettingsError
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.merge import merge_queries, projector
from app.evaluation.sql import FIELDS, CompiledGroup, compile_group, fallback_reason
from app.policy.payload_plan import (
    COLUMN,
    DERIVED_VALUE,
    ENUM,
    FALSE,
    FOREIGN_ID,
    GLOBAL_ID,
    TYPENAME,
    Embedded,
    Leaf,
    MoneyOf,
    MoneyPart,
    Obj,
    Relation,
    RootPlan,
)
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


def test_the_marketplacer_fields_become_money_parts_derived_values_and_embedded_objects() -> None:
    # given a variant query with Marketplacer's money scalars and the option values connection
    g = group(
        "query($id: ID!) { variant(id: $id) { priceCents lowestPrice salePrice { amount } optionValues"
        " { pageInfo { hasNextPage endCursor } edges { cursor node { id optionType { name } } } } } }",
        entity_type=EntityType.VARIANT,
    )
    (root,) = g.plan.entries
    assert isinstance(root, Relation)
    cents, lowest, sale, options = root.obj.entries
    # then the scalars are parts of a named Money, and salePrice is a Money object
    assert cents == MoneyPart(cents.key, "price", "own", "cents")
    assert lowest == MoneyPart(lowest.key, "lowest_price", "own", "amount")
    assert isinstance(sale, MoneyOf) and (sale.amount, sale.currency) == ("sale_price", "own")
    # and the connection and its page info are made from the variant's own row, its edges from the
    # view of its option values, and an edge's node from the edge's row
    assert isinstance(options, Embedded) and options.obj.table == "variants"
    page_info, edges = options.obj.entries
    assert isinstance(page_info, Embedded) and page_info.obj.table == "variants"
    assert [e.kind for e in page_info.obj.entries if isinstance(e, Leaf)] == [FALSE, DERIVED_VALUE]
    assert isinstance(edges, Relation) and (edges.table, edges.column, edges.many) == (
        "variant_option_value_details",
        "variant_id",
        True,
    )
    cursor, node = edges.obj.entries
    assert cursor == Leaf(cursor.key, GLOBAL_ID, "id", "cursor")
    assert isinstance(node, Embedded) and node.obj.table == "variant_option_value_details"
    assert node.obj.entries[0] == Leaf(node.obj.entries[0].key, GLOBAL_ID, "option_value_id", "OptionValue")


def test_a_line_items_variant_id_and_an_invoices_flags_are_leaves() -> None:
    g = group("query($id: ID!) { invoice(id: $id) { statusFlags lineItems { variantId } } }")
    (root,) = g.plan.entries
    assert isinstance(root, Relation)
    flags, lines = root.obj.entries
    assert flags == Leaf(flags.key, DERIVED_VALUE, "invoice_status_flags")
    assert isinstance(lines, Relation)
    assert lines.obj.entries == (Leaf(lines.obj.entries[0].key, FOREIGN_ID, "variant_id", "Variant"),)


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


# Fields of the marketplace types that fall back to graphql-core (README, "Compiled queries"),
# each with the reason it has no SQL form: none today. A field added to the schema shows up here.
NOT_COMPILED: dict[str, set[str]] = {}


def test_every_field_of_the_compiled_types_is_mapped_or_listed_as_falling_back() -> None:
    gql = schema._schema
    for type_name, fields in FIELDS.items():
        graphql_type = gql.get_type(type_name)
        unmapped = set(graphql_type.fields) - {"id"} - set(fields)  # type: ignore[union-attr]
        assert unmapped == NOT_COMPILED.get(type_name, set()), type_name


def test_every_object_type_a_webhook_query_reaches_is_compiled() -> None:
    # from the three entities, through every field: each object type but Money has a field table
    gql = schema._schema
    seen: set[str] = set()
    frontier = [e.graphql_name for e in EntityType]
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        for f in gql.get_type(name).fields.values():  # type: ignore[union-attr]
            target = get_named_type(f.type)
            if isinstance(target, GraphQLObjectType) and target.name != "Money":
                frontier.append(target.name)
    assert seen == set(FIELDS)


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
        # a derived value of another table's rows, or of no name
        RootPlan(
            "invoices",
            (
                Relation(
                    "a",
                    "invoices",
                    "id",
                    False,
                    Obj("invoices", (Leaf("f", DERIVED_VALUE, "option_values_end_cursor"),)),
                ),
            ),
        ),
        RootPlan(
            "invoices",
            (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("f", DERIVED_VALUE, "pg_sleep"),))),),
        ),
        # a foreign ID of a type without a table, or of a table read without ownership
        RootPlan(
            "invoices",
            (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("v", FOREIGN_ID, "order_id", "ApiKey"),))),),
        ),
        RootPlan(
            "invoices",
            (Relation("a", "invoices", "id", False, Obj("invoices", (Leaf("v", FOREIGN_ID, "order_id", "Order"),))),),
        ),
        # a Money part that is not one, an object embedded from another table's row
        RootPlan(
            "invoices",
            (
                Relation(
                    "a", "invoices", "id", False, Obj("invoices", (MoneyPart("m", "invoice_total", "own", "raw"),))
                ),
            ),
        ),
        RootPlan(
            "invoices",
            (Relation("a", "invoices", "id", False, Obj("invoices", (Embedded("e", Obj("api_keys", ())),))),),
        ),
        # children whose rows are claimed to be another table's
        RootPlan(
            "variants",
            (
                Relation(
                    "a",
                    "variants",
                    "id",
                    False,
                    Obj(
                        "variants",
                        (Relation("o", "variant_option_value_details", "variant_id", True, Obj("webhooks", ())),),
                    ),
                ),
            ),
        ),
        # the entity as a row of another table
        RootPlan("invoices", (Relation("a", "invoices", "id", False, Obj("sellers", ())),)),
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
