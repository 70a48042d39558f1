"""Static cost of a document (app.evaluation.cost): pure, against the running schema, no database."""

from typing import Any

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    get_introspection_query,
    get_named_type,
    parse,
)

from app.api import pagination, query
from app.api.schema import schema
from app.config import Settings
from app.evaluation.cost import (
    DEFAULT_PAGE,
    INTROSPECTION_COST,
    LIST_BOUNDS,
    MAX_IDS,
    MAX_PAGE,
    NODES_CEILING,
    Cost,
    Limits,
    check,
    limits_for,
    measure,
    returned,
)

SCHEMA = schema._schema
SELLER = limits_for(Settings(), operator=False)
OPERATOR = limits_for(Settings(), operator=True)


def cost_of(document: str, variables: dict[str, Any] | None = None, name: str | None = None, work: int = 10**6) -> Cost:
    return measure(SCHEMA, parse(document), name, variables, max_work=work)


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [
        # nodes: every field once per parent object; a plain list counts 20 items
        ("{ __typename }", None, Cost(depth=1, aliases=0, fields=1, nodes=1)),
        ('{ invoice(id: "x") { id status } }', None, Cost(depth=2, aliases=0, fields=3, nodes=3)),
        ('{ invoice(id: "x") { lineItems { quantity } } }', None, Cost(depth=3, aliases=0, fields=3, nodes=41)),
        # the seller query, 2 levels of seller › products: 1 + 1 + 20 + 20 + 400 + 400
        (
            '{ invoice(id: "x") { seller { products { seller { products { legacyId } } } } } }',
            None,
            Cost(depth=6, aliases=0, fields=6, nodes=842),
        ),
        # connections: `first`, literal or variable, else the default page; at most 100
        ("{ invoices { nodes { id } } }", None, Cost(depth=3, aliases=0, fields=3, nodes=1 + 20 + 20)),
        ("{ invoices(first: 3) { edges { cursor node { id } } } }", None, Cost(3 + 1, 0, 5, 1 + 3 + 3 + 3 + 3)),
        ("{ invoices(first: 1000) { nodes { id } } }", None, Cost(depth=3, aliases=0, fields=3, nodes=1 + 200)),
        ("{ invoices(first: 0) { nodes { id } pageInfo { hasNextPage } } }", None, Cost(3, 0, 5, 1 + 0 + 0 + 1 + 1)),
        ("query($n: Int) { variants(first: $n) { nodes { sku } } }", {"n": 5}, Cost(3, 0, 3, 1 + 5 + 5)),
        ("query($n: Int) { variants(first: $n) { nodes { sku } } }", {}, Cost(3, 0, 3, 1 + 20 + 20)),
        ("query($n: Int = 7) { variants(first: $n) { nodes { sku } } }", {}, Cost(3, 0, 3, 1 + 7 + 7)),
        # `first` that does not coerce: execution refuses it; counted as the largest page
        ('{ variants(first: "x") { nodes { sku } } }', None, Cost(3, 0, 3, 1 + 100 + 100)),
        # the connection's page applies to its own lists only, not to lists below them
        (
            "{ invoices(first: 2) { nodes { lineItems { id } } } }",
            None,
            Cost(depth=4, aliases=0, fields=4, nodes=1 + 2 + 40 + 40),
        ),
        ("{ webhook(id: 1) { events(first: 3) { nodes { attempts { statusCode } } } } }", None, Cost(5, 0, 5, 125)),
        # nodes(ids:): one item per id, literal or variable
        ('{ nodes(ids: ["a", "b", "c"]) { id } }', None, Cost(depth=2, aliases=0, fields=2, nodes=6)),
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["a", "b"]}, Cost(2, 0, 2, 4)),
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": "a"}, Cost(2, 0, 2, 2)),  # coerced to a list
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {}, Cost(2, 0, 2, 2 * MAX_IDS)),
        # inline fragments: every branch counts, without adding depth
        (
            "query($id: ID!) { node(id: $id) { ... on Invoice { lineItems { quantity } } ... on Variant { sku } } }",
            None,
            Cost(depth=3, aliases=0, fields=4, nodes=1 + 20 + 20 + 1),
        ),
        # fragments count at every spread, aliases included
        (
            "fragment F on Invoice { a: id b: status } "
            "{ invoices(first: 10) { nodes { ...F } edges { node { ...F } } } }",
            None,
            Cost(depth=4, aliases=4, fields=8, nodes=1 + 10 + 20 + 10 + 10 + 20),
        ),
        # introspection: a flat cost, its selection neither nodes nor depth
        ("{ __schema { types { fields { name } } } a: __typename }", None, Cost(1, 1, 2, INTROSPECTION_COST + 1)),
        # invalid documents still measure (validation reports them after): unknown fields are leaves,
        # unknown fragments and cycles add nothing
        ("{ nope { deeper { x } } }", None, Cost(depth=3, aliases=0, fields=3, nodes=3)),
        ("{ ...Missing __typename }", None, Cost(depth=1, aliases=0, fields=1, nodes=1)),
        ("fragment A on Query { ...B } fragment B on Query { ...A __typename } { ...A }", None, Cost(1, 0, 1, 1)),
    ],
)
def test_cost_of_a_document(document: str, variables: dict[str, Any] | None, expected: Cost) -> None:
    assert cost_of(document, variables) == expected


def test_only_the_operation_that_runs_counts() -> None:
    document = "query Small { __typename } query Big { invoices(first: 100) { nodes { id } } }"
    assert cost_of(document, name="Small").nodes == 1
    assert cost_of(document, name="Big").nodes == 201
    assert cost_of(document).nodes == 202  # not told which: both (execution refuses it anyway)
    assert cost_of(document, name="Nope").nodes == 0  # execution refuses it: "Unknown operation"


def test_exponential_fragments_stop_after_a_bounded_walk() -> None:
    # given fragments each spreading the next one twice: 2^40 fields once expanded
    bomb = "{ ...F0 } " + "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }} " for i in range(40))
    bomb += "fragment F40 on Query { __typename }"
    # and the same with nothing at the bottom but an unknown fragment: no field, only spreads
    empty = bomb.replace("fragment F40 on Query { __typename }", "fragment F40 on Query { ...Nope }")
    for document in (bomb, empty):
        # when measured with a seller's limits, then counting stops once past them, and it is refused
        cost = cost_of(document, work=SELLER.max_cost)
        assert not cost.complete and cost.fields <= SELLER.max_cost
        assert "more than 5,000 fields and fragments" in (check(cost, SELLER) or "")


def test_nesting_beyond_graphql_cores_limit_stops_counting_without_exhausting_the_stack() -> None:
    # 300 fragments, each spreading the next: nesting the parser allows within a definition, but not across them
    chain = "{ ...F0 } " + "".join(f"fragment F{i} on Query {{ ...F{i + 1} }} " for i in range(300))
    chain += "fragment F300 on Query { __typename }"
    cost = cost_of(chain)
    assert not cost.complete
    assert check(cost, OPERATOR) is not None


def test_reported_nodes_stay_exact_in_json() -> None:
    # 60 nested levels of seller › products (past every depth limit): 20^60 objects
    document = '{ invoice(id: "x") { ' + "seller { products { " * 60 + "id" + " } }" * 60 + " } }"
    cost = cost_of(document)
    assert cost.nodes == NODES_CEILING and not cost.complete


def test_graphiqls_introspection_fits_a_sellers_limits() -> None:
    introspection = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True)
    assert check(cost_of(introspection, name="IntrospectionQuery"), SELLER) is None


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        (Cost(depth=8, aliases=30, fields=100, nodes=5_000), None),
        (
            Cost(depth=3, aliases=0, fields=5, nodes=1_250_000),
            "query cost 1,250,000 exceeds the seller limit of 5,000 (estimated objects and values returned; "
            "a list counts 20 items unless `first` or `ids` says otherwise)",
        ),
        (Cost(depth=9, aliases=0, fields=9, nodes=9), "query depth 9 exceeds the seller limit of 8 (levels of nested"),
        (Cost(depth=1, aliases=1_000, fields=1_000, nodes=1_000), "query uses 1,000 aliases; the seller limit is 30"),
        (Cost(depth=1, aliases=0, fields=5_001, nodes=4_000, complete=False), "more than 5,000 fields and fragments"),
        (Cost(depth=20, aliases=0, fields=20, nodes=10**9, complete=False), "query cost at least 1,000,000,000"),
    ],
)
def test_check_names_the_limit_and_the_measured_cost(cost: Cost, message: str | None) -> None:
    found = check(cost, SELLER)
    assert found == message if message is None else message in (found or "")


def test_every_limit_exceeded_is_named_at_once() -> None:
    found = check(Cost(depth=9, aliases=31, fields=40, nodes=6_000), SELLER) or ""
    assert "query cost 6,000" in found and "query depth 9" in found and "31 aliases" in found


def test_limits_come_from_settings_by_kind_of_key() -> None:
    settings = Settings(seller_max_depth=3, seller_max_aliases=4, seller_max_cost=5, operator_max_cost=6)
    assert limits_for(settings, operator=False) == Limits(3, 4, 5, "seller")
    assert limits_for(settings, operator=True) == Limits(
        settings.operator_max_depth, settings.operator_max_aliases, 6, "operator"
    )
    assert SELLER.max_cost < OPERATOR.max_cost and SELLER.max_depth < OPERATOR.max_depth


def test_every_list_in_the_schema_has_a_fan_out() -> None:
    """A new list field must say how many items it counts: a connection's (by `first`), one
    with `ids`, or a plain list in LIST_BOUNDS."""
    types = [t for t in SCHEMA.type_map.values() if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    connections = {get_named_type(f.type).name for t in types for f in t.fields.values() if "first" in f.args}
    plain = set()
    for type_ in types:
        if type_.name.startswith("__") or type_.name in connections:
            continue
        for name, field in type_.fields.items():
            inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if isinstance(inner, GraphQLList) and "ids" not in field.args:
                plain.add(f"{type_.name}.{name}")
    assert plain == set(LIST_BOUNDS)


def test_page_and_id_bounds_match_the_api() -> None:
    assert (DEFAULT_PAGE, MAX_PAGE, MAX_IDS) == (pagination.DEFAULT_PAGE, pagination.MAX_PAGE, query.MAX_NODES)


def test_an_answer_counts_its_objects_and_values_as_the_estimate_does() -> None:
    query = "{ invoices(first: 3) { nodes { id lineItems { quantity variant { sku } } } } }"
    estimate = measure(schema._schema, parse(query), None, None, max_work=10_000).nodes
    # the estimate: invoices, nodes ×3, id ×3, lineItems ×60 (20 each), quantity, variant, sku ×60 each
    assert estimate == 1 + 3 + 3 + 60 + 3 * 60
    # an answer with two invoices, of 2 and 0 line items (one variant not visible: null)
    data = {"invoices": {"nodes": [
        {"id": "a", "lineItems": [{"quantity": 1, "variant": {"sku": "x"}}, {"quantity": 2, "variant": None}]},
        {"id": "b", "lineItems": []},
    ]}}
    # invoices 1, nodes 2, id 2, lineItems 2, quantity 2, variant 2, sku 1
    assert returned(data, at_most=estimate) == 12
    assert returned({"__typename": "Query"}, at_most=1) == 1
    assert returned(None, at_most=100) == 0  # nothing ran (a refused or failed document)


def test_counting_an_answer_stops_at_its_estimate() -> None:
    # GraphiQL's introspection answer holds thousands of values; it was estimated at a flat cost
    data = {"__schema": {"types": [{"name": f"T{i}", "fields": [{"name": "f"}] * 50} for i in range(200)]}}
    assert returned(data, at_most=INTROSPECTION_COST) == INTROSPECTION_COST
