"""Webhook query rules (SPEC §4): pure, against the running schema, no database."""

import pytest
from graphql import DocumentNode

from app.api.schema import schema
from app.config import Settings
from app.evaluation import compile as compile_module
from app.evaluation.compile import DEFAULT_QUERY, MAX_DEPTH, MAX_FIELDS, CompiledQuery, QueryError, compile_query
from app.evaluation.cost import limits_for
from app.types import EntityType

SELLER = limits_for(Settings(), operator=False)
OPERATOR = limits_for(Settings(), operator=True)


def nested(levels: int) -> str:
    """A query `levels` fields deep: invoice › order › invoices › … › id."""
    hops = ["order", "invoices"] * levels
    inner = levels - 2  # `invoice` and the final `id` are two of the levels
    return "query($id: ID!) { invoice(id: $id) { " + " { ".join(hops[:inner]) + " { id" + " }" * (inner + 1) + " }"


def wide(fields: int) -> str:
    """A query selecting exactly `fields` fields: `invoice` and aliases under it."""
    return "query($id: ID!) { invoice(id: $id) { " + " ".join(f"a{i}: status" for i in range(fields - 1)) + " } }"


@pytest.mark.parametrize(
    ("entity_type", "query"),
    [
        (EntityType.INVOICE, DEFAULT_QUERY),
        (EntityType.VARIANT, DEFAULT_QUERY),
        (EntityType.INVOICE, "query($id: ID!) { node(id: $id) { ... on Invoice { id status } } }"),
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) { id total { amount } } }"),
        (EntityType.REFUND_REQUEST, "query Named($id: ID!) { r: refundRequest(id: $id) { id } }"),
        (EntityType.VARIANT, "fragment V on Variant { sku } query($id: ID!) { node(id: $id) { ...V } }"),
        (EntityType.INVOICE, "query($id: ID!) { __typename node(id: $id) { ... on Node { id } } }"),
        (EntityType.INVOICE, nested(MAX_DEPTH)),
        (EntityType.INVOICE, wide(MAX_FIELDS)),
    ],
)
def test_accepted_queries_compile_to_a_document(entity_type: EntityType, query: str) -> None:
    compiled = compile_query(schema, query, entity_type)
    assert isinstance(compiled, CompiledQuery), compiled
    assert isinstance(compiled.document, DocumentNode)
    assert (compiled.text, compiled.entity_type) == (query, entity_type)


@pytest.mark.parametrize(
    ("entity_type", "query", "message"),
    [
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) {", "query does not parse: Syntax Error"),
        (EntityType.INVOICE, "fragment F on Invoice { id }", "exactly one operation, found 0"),
        (
            EntityType.INVOICE,
            "query A($id: ID!) { invoice(id: $id) { id } } query B($id: ID!) { invoice(id: $id) { id } }",
            "exactly one operation, found 2",
        ),
        (EntityType.INVOICE, "mutation($id: ID!) { webhookDelete(id: $id) { deletedId } }", "not a mutation"),
        (EntityType.INVOICE, "subscription { webhookEvents { id } }", "not a subscription"),
        (EntityType.INVOICE, "query($id: ID!, $n: Int) { invoice(id: $id) { id } }", "found `$n: Int`"),
        (
            EntityType.INVOICE,
            "query($id: ID) { invoice(id: $id) { id } }",
            "the only variable allowed is `$id: ID!`, found `$id: ID`",
        ),
        (EntityType.INVOICE, "query($id: [ID]!) { invoice(id: $id) { id } }", "found `$id: [ID]!`"),
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) { nope } }", "Cannot query field 'nope'"),
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) { id ...Missing } }", "Unknown fragment"),
        (
            EntityType.INVOICE,
            "query($id: ID!) { node(id: $id) { ... on Variant { sku } } }",
            "query selects Variant but this webhook's type is Invoice",
        ),
        (EntityType.VARIANT, "query($id: ID!) { invoice(id: $id) { id } }", "found `invoice`"),
        (EntityType.INVOICE, 'query { invoice(id: "SW52b2ljZTox") { id } }', "at the top level, found `invoice`"),
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) { id } webhooks { id } }", "found `webhooks`"),
        (EntityType.INVOICE, "query { __typename }", "query must select the entity: `node(id: $id)"),
        (EntityType.INVOICE, nested(MAX_DEPTH + 1), "nested 11 levels deep; at most 10"),
        (EntityType.INVOICE, wide(MAX_FIELDS + 1), "selects 501 fields after fragment expansion; at most 500"),
        (
            EntityType.INVOICE,
            "fragment F on Invoice { " + " ".join(f"a{i}: status" for i in range(300)) + " } "
            "query($id: ID!) { invoice(id: $id) { ...F order { invoices { ...F } } } }",
            "selects 603 fields after fragment expansion",
        ),
        (EntityType.INVOICE, "query($id: ID!) { invoice(id: $id) { id } }" + " " * 50_001, "longer than 50000"),
    ],
)
def test_refused_queries_say_why(entity_type: EntityType, query: str, message: str) -> None:
    compiled = compile_query(schema, query, entity_type)
    assert isinstance(compiled, QueryError)
    assert message in compiled.message


def test_compiling_is_cached_per_text_and_type() -> None:
    # given a query compiled once
    query = "query($id: ID!) { node(id: $id) { ... on Invoice { id currency } } }"
    first = compile_query(schema, query, EntityType.INVOICE)
    # when it is compiled again, for the same or another type
    again = compile_query(schema, query, EntityType.INVOICE)
    other = compile_query(schema, query, EntityType.VARIANT)
    # then the same document comes back (nothing parsed twice), and the type is part of the key
    assert isinstance(first, CompiledQuery) and again is first
    assert isinstance(other, QueryError)


def test_one_off_compilations_are_not_kept() -> None:
    query = "query($id: ID!) { node(id: $id) { ... on Invoice { id order { buyerName } } } }"
    once = compile_query(schema, query, EntityType.INVOICE, remember=False)
    kept = compile_query(schema, query, EntityType.INVOICE)
    assert isinstance(once, CompiledQuery) and isinstance(kept, CompiledQuery)
    assert kept is not once and kept == once  # equal by text and type, so they group together
    assert compile_query(schema, query, EntityType.INVOICE) is kept


def test_oversized_documents_are_refused_before_the_expensive_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    # given thousands of fields in one selection set (quadratic to validate) and a fragment bomb
    flat = "query($id: ID!) { invoice(id: $id) { " + "id " * 12_000 + "} }"
    bomb = (
        "query($id: ID!) { invoice(id: $id) { ...F0 } } "
        + "".join(f"fragment F{i} on Invoice {{ " + f"...F{i + 1} " * 10 + "} " for i in range(9))
        + "fragment F9 on Invoice { id status }"
    )
    # and one that expands to spreads only: no field at the bottom, an unknown fragment
    empty_bomb = bomb.replace("fragment F9 on Invoice { id status }", "fragment F9 on Invoice { ...Nope }")
    validated: list[object] = []
    real_validate = compile_module.validate
    monkeypatch.setattr(compile_module, "validate", lambda *a, **k: validated.append(a) or real_validate(*a, **k))
    for query in (flat, bomb, empty_bomb):
        compiled = compile_query(schema, query, EntityType.INVOICE)
        # then each is refused for its size, and graphql-core's validation never ran on it
        assert isinstance(compiled, QueryError) and "at most 500" in compiled.message
    assert validated == []
    # (the counter sees validation when it does run)
    assert not isinstance(
        compile_query(schema, "query($id: ID!) { invoice(id: $id) { id } }", EntityType.INVOICE), QueryError
    )
    assert len(validated) == 1


def doubled(levels: int) -> str:
    """The issue's webhook query: two aliased `products { legacyId seller { … } }` at each level."""
    inner = "legacyId"
    for _ in range(levels):
        inner = f"a: products {{ legacyId seller {{ {inner} }} }} b: products {{ legacyId seller {{ {inner} }} }}"
    return f"query($id: ID!) {{ invoice(id: $id) {{ seller {{ {inner} }} }} }}"


def test_a_query_within_the_spec_rules_is_held_to_its_owners_cost_limits() -> None:
    # given the issue's query, 3 levels deep: within SPEC §4's depth and field rules
    query = doubled(3)
    assert isinstance(compile_query(schema, query, EntityType.INVOICE), CompiledQuery)
    # then an owner's limits refuse it, naming the limit and the cost measured
    for limits in (SELLER, OPERATOR):
        refused = compile_query(schema, query, EntityType.INVOICE, limits=limits)
        assert isinstance(refused, QueryError)
        assert f"query cost 260,922 exceeds the {limits.kind} limit of {limits.max_cost:,}" in refused.message


def test_a_kept_query_is_still_held_to_each_callers_limits() -> None:
    # given a query within the operator's limits but not a seller's, kept after an operator's use
    heavy = (  # ~17,000 objects and values estimated
        "query($id: ID!) { invoice(id: $id) { seller { products { variants { sku } "
        "seller { products { variants { sku } } } } } } }"
    )
    kept = compile_query(schema, heavy, EntityType.INVOICE, limits=OPERATOR)
    assert isinstance(kept, CompiledQuery)
    # then a seller is refused it, and the engine (no limits) still finds it kept
    refused = compile_query(schema, heavy, EntityType.INVOICE, limits=SELLER)
    assert isinstance(refused, QueryError) and "exceeds the seller limit of 5,000" in refused.message
    assert compile_query(schema, heavy, EntityType.INVOICE) is kept
