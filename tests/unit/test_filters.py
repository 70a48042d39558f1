"""Delivery filters (app.policy.filters): the grammar, its bounds and errors, checking paths
against a query's selection, and every operator evaluated on payloads."""

from decimal import Decimal

import pytest

from app.policy.filters import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_LIST,
    MAX_TERMS,
    All,
    Any_,
    Compare,
    FilterError,
    Not,
    entity_root,
    matches,
    parse,
    unknown_paths,
)

INVOICE = {
    "data": {
        "node": {
            "id": "SW52b2ljZTox",
            "legacyId": 42,
            "status": "SHIPPED",
            "total": {"amount": "120.50", "currencyCode": "USD"},
            "totalCents": 12050,
            "paid": True,
            "shippedAt": "2026-11-22T10:00:00Z",
            "barcode": None,
            "lineItems": [{"status": "SHIPPED", "quantity": 1}, {"status": "CANCELLED", "quantity": 3}],
        }
    }
}


def test_the_grammar_builds_the_tree_with_and_binding_tighter_than_or() -> None:
    assert parse("a.b == 1 or a.c exists and not a.d in [X, 'y']") == Any_(
        (
            Compare(("a", "b"), "==", (Decimal(1),)),
            All((Compare(("a", "c"), "exists", ()), Not(Compare(("a", "d"), "in", ("X", "y"))))),
        )
    )
    assert parse('(x.y != "a\\"b")') == Compare(("x", "y"), "!=", ('a"b',))
    assert parse("x.y in []") == Compare(("x", "y"), "in", ())
    assert parse("x.y == true and x.z == null") == All(
        (Compare(("x", "y"), "==", (True,)), Compare(("x", "z"), "==", (None,)))
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "filter is empty"),
        ("   ", "filter is empty"),
        ("invoice.status ==", "expected a value (a string, a number, true, false, null or a NAME) at the end"),
        ("invoice.status in [A,", "expected a value"),
        ("invoice.status in A", "expected '[' at position 19 ('A')"),
        ("invoice.status == A B", "expected `and`, `or` or the end at position 21 ('B')"),
        ("(invoice.status exists", "expected ')' at the end"),
        ("invoice.status ~ 1", "unexpected character '~' at position 16"),
        ("and == 1", "expected a field path at position 1 ('and')"),
        ("invoice. == 1", "expected a field path at position 10 ('==')"),
        ("invoice.status", "expected a comparison (==, !=, <, >, <=, >=, in, exists) at the end"),
        ("invoice.status = 1", "unexpected character '=' at position 16"),
        ("invoice.status == 'open", "unexpected character \"'\" at position 19"),
        ("invoice.status == and", "expected a value"),
    ],
)
def test_malformed_filters_are_refused_saying_what_and_where(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_the_size_depth_terms_and_lists_are_bounded() -> None:
    with pytest.raises(FilterError, match=f"longer than {MAX_FILTER_LENGTH} characters"):
        parse("a.b == 1 or " * 500 + "a.b == 1")
    with pytest.raises(FilterError, match=f"more than {MAX_DEPTH} levels deep"):
        parse("not " * (MAX_DEPTH + 1) + "a.b exists")
    with pytest.raises(FilterError, match=f"more than {MAX_DEPTH} levels deep"):
        parse("(" * (MAX_DEPTH + 1) + "a.b exists" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(FilterError, match=f"more than {MAX_TERMS} comparisons"):
        parse(" or ".join(["a.b exists"] * (MAX_TERMS + 1)))
    with pytest.raises(FilterError, match=f"at most {MAX_LIST} values"):
        parse("a.b in [" + ", ".join(["1"] * (MAX_LIST + 1)) + "]")
    assert parse("not " * MAX_DEPTH + "a.b exists")  # the bound itself is allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ==, with enum NAMEs, strings, numbers (a Money decimal string too) and booleans
        ("invoice.status == SHIPPED", True),
        ("invoice.status == 'SHIPPED'", True),
        ("invoice.status == PAID", False),
        ("invoice.legacyId == 42", True),
        ("invoice.total.amount == 120.5", True),
        ("invoice.paid == true", True),
        ("invoice.barcode == null", False),  # null values satisfy no comparison but !=
        # !=
        ("invoice.status != PAID", True),
        ("invoice.status != SHIPPED", False),
        ("invoice.missing != SHIPPED", True),
        # in
        ("invoice.status in [SHIPPED, CANCELLED]", True),
        ("invoice.status in [PAID, CANCELLED]", False),
        ("invoice.legacyId in [1, 42]", True),
        # < and > (and <=, >=): numbers numerically, strings as strings
        ("invoice.totalCents > 12000", True),
        ("invoice.totalCents < 12000", False),
        ("invoice.total.amount > 99.99", True),
        ("invoice.total.amount < 100", False),
        ("invoice.totalCents >= 12050 and invoice.totalCents <= 12050", True),
        ("invoice.shippedAt > '2026-11-01'", True),
        ("invoice.status > 5", False),
        # exists
        ("invoice.status exists", True),
        ("invoice.barcode exists", False),
        ("invoice.missing exists", False),
        # through a list: any element
        ("invoice.lineItems.status == CANCELLED", True),
        ("invoice.lineItems.quantity > 2", True),
        ("invoice.lineItems.quantity > 3", False),
        # and / or / not, and the root field's own name
        ("invoice.status == SHIPPED and invoice.legacyId == 41", False),
        ("invoice.status == PAID or invoice.legacyId == 42", True),
        ("not invoice.status == PAID", True),
        ("node.status == SHIPPED", True),
    ],
)
def test_each_operator_on_a_payload(text: str, expected: bool) -> None:
    assert matches(parse(text), INVOICE, "invoice") is expected


def test_a_deleted_entity_or_an_error_payload_has_no_values() -> None:
    deleted = {"data": {"node": None}}
    errored = {"data": None, "errors": [{"message": "boom"}]}
    for payload in (deleted, errored):
        assert matches(parse("invoice.status exists"), payload, "invoice") is False
        assert matches(parse("invoice.status in [SHIPPED]"), payload, "invoice") is False
        assert matches(parse("not invoice.status exists"), payload, "invoice") is True


def test_paths_are_checked_against_the_selection() -> None:
    selected = {("node",), ("node", "status"), ("node", "total"), ("node", "total", "amount"), ("__typename",)}
    condition = parse("invoice.status == A and node.total.amount > 1 and invoice.nope exists or x.status exists")
    assert unknown_paths(condition, selected, "invoice") == ["invoice.nope", "x.status"]
    assert unknown_paths(parse("variant.status exists"), selected, "invoice") == ["variant.status"]


def test_the_entity_root_is_its_root_field_name() -> None:
    assert [entity_root(t) for t in ("Invoice", "Variant", "RefundRequest")] == ["invoice", "variant", "refundRequest"]
