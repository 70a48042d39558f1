"""Delivery filters: a small declarative condition over a webhook's own payload. Pure.

An integrator writes a filter as a text expression, e.g.

    invoice.status in [SHIPPED, CANCELLED]
    variant.product.legacyId == 42 and not variant.barcode exists
    (invoice.total.amount > 100 or invoice.lineItems.status == CANCELLED) and invoice.seller exists

Grammar (keywords are lower-case):

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := path "exists"
                | path ("==" | "!=" | "<" | ">" | "<=" | ">=") value
                | path "in" "[" [value ("," value)*] "]"
    path       := name ("." name)*          names are GraphQL response keys (aliases included)
    value      := "string" | 'string' | number | true | false | null | NAME   (a bare NAME is a string: SHIPPED)

A path's first name is the entity (`invoice`, `variant`, `refundRequest`) or the query's root
field (`node`, `invoice`, or its alias); the rest walk the query's selection. Semantics:

- A path that meets a list (`invoice.lineItems.status`) stands for every value under it; a
  comparison holds when it holds for any of them.
- A missing or null value satisfies no comparison but `!=` (which is `not ==`); `exists` holds
  when the path reaches at least one non-null value.
- `==`/`!=`/`in` compare numbers as numbers (a payload's decimal string such as Money's
  `"12.50"` included) and everything else by equality (a bare NAME equals the enum value it
  spells). `<`, `>`, `<=`, `>=` compare numbers as numbers and two strings as strings (ISO
  times order correctly); anything else is false.

`parse` bounds the text (MAX_FILTER_LENGTH characters, MAX_DEPTH nesting, MAX_TERMS comparisons,
MAX_LIST values per `in`) and raises FilterError with the position of the first problem;
`unknown_paths` checks the paths against the query's selection; `matches` evaluates."""

from __future__ import annotations

import re
from collections.abc import Iterator, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_FILTER_LENGTH = 2000  # characters
MAX_DEPTH = 16  # levels of nested `not` and parentheses
MAX_TERMS = 64  # comparisons in one filter
MAX_LIST = 100  # values in one `in [...]`
MAX_PATH_NAMES = 12  # names in one path: a query is at most 10 levels deep, plus the root

ENTITY_ROOTS = frozenset({"invoice", "variant", "refundRequest"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "true", "false", "null"})


class FilterError(ValueError):
    """Why a filter's text was refused; the message is shown to the integrator as is."""


# --- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],.])
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # op, punct, number, string, name, end
    text: str
    at: int  # character offset, for messages


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"filter: unexpected character {text[pos]!r} at position {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    path: tuple[str, ...]
    op: str  # one of COMPARISONS, "in" or "exists"
    values: tuple[Any, ...]  # one value; the list of `in`; none for `exists`


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


@dataclass(frozen=True, slots=True)
class All:
    operands: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    operands: tuple[Condition, ...]


Condition = Compare | Not | All | Any_


# --- parsing -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.terms = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, message: str, token: Token | None = None) -> FilterError:
        token = token or self.peek()
        where = "at the end" if token.kind == "end" else f"at position {token.at + 1} ({token.text!r})"
        return FilterError(f"filter: {message} {where}")

    def expect(self, text: str) -> None:
        if self.peek().text != text or self.peek().kind in ("string", "end"):
            raise self.error(f"expected {text!r}")
        self.take()

    def parse(self) -> Condition:
        condition = self.or_(0)
        if self.peek().kind != "end":
            raise self.error("expected `and`, `or` or the end")
        return condition

    def _deeper(self, depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise self.error(f"nests `not` and parentheses more than {MAX_DEPTH} levels deep")
        return depth + 1

    def or_(self, depth: int) -> Condition:
        operands = [self.and_(depth)]
        while self.peek().kind == "name" and self.peek().text == "or":
            self.take()
            operands.append(self.and_(depth))
        return operands[0] if len(operands) == 1 else Any_(tuple(operands))

    def and_(self, depth: int) -> Condition:
        operands = [self.unary(depth)]
        while self.peek().kind == "name" and self.peek().text == "and":
            self.take()
            operands.append(self.unary(depth))
        return operands[0] if len(operands) == 1 else All(tuple(operands))

    def unary(self, depth: int) -> Condition:
        token = self.peek()
        if token.kind == "name" and token.text == "not":
            depth = self._deeper(depth)
            self.take()
            return Not(self.unary(depth))
        if token.kind == "punct" and token.text == "(":
            depth = self._deeper(depth)
            self.take()
            inner = self.or_(depth)
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"has more than {MAX_TERMS} comparisons")
        path = self.path()
        token = self.take()
        if token.kind == "name" and token.text == "exists":
            return Compare(path, "exists", ())
        if token.kind == "op":
            return Compare(path, token.text, (self.value(),))
        if token.kind == "name" and token.text == "in":
            self.expect("[")
            values: list[Any] = []
            if self.peek().text != "]" or self.peek().kind != "punct":
                values.append(self.value())
                while self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
                    values.append(self.value())
                    if len(values) > MAX_LIST:
                        raise self.error(f"`in` takes at most {MAX_LIST} values")
            self.expect("]")
            return Compare(path, "in", tuple(values))
        raise self.error("expected a comparison (==, !=, <, >, <=, >=, in, exists)", token)

    def path(self) -> tuple[str, ...]:
        names = [self.name()]
        while self.peek().kind == "punct" and self.peek().text == ".":
            self.take()
            names.append(self.name())
            if len(names) > MAX_PATH_NAMES:
                raise self.error(f"a path has at most {MAX_PATH_NAMES} names")
        return tuple(names)

    def name(self) -> str:
        token = self.take()
        if token.kind != "name" or token.text in KEYWORDS:
            raise self.error("expected a field path", token)
        return token.text

    def value(self) -> Any:
        token = self.take()
        if token.kind == "number":
            return Decimal(token.text)
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "name" and token.text in _LITERALS:
            return _LITERALS[token.text]
        if token.kind == "name" and token.text not in KEYWORDS:
            return token.text  # a bare NAME: an enum value such as SHIPPED
        raise self.error("expected a value (a string, a number, true, false, null or a NAME)", token)


_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def entity_root(type_name: str) -> str:
    """The name a filter may use for the entity: `Invoice` → `invoice`, `RefundRequest` →
    `refundRequest` (the entity's root field)."""
    return type_name[:1].lower() + type_name[1:]


def parse(text: str) -> Condition:
    """The condition `text` spells, or FilterError naming the first problem and where it is."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    if not text.strip():
        raise FilterError("filter is empty")
    return _Parser(text).parse()


# --- checking against the query's selection ------------------------------------------------------


def paths(condition: Condition) -> Iterator[tuple[str, ...]]:
    """Every path the condition reads, in the order written."""
    if isinstance(condition, Compare):
        yield condition.path
    elif isinstance(condition, Not):
        yield from paths(condition.operand)
    else:
        for operand in condition.operands:
            yield from paths(operand)


def unknown_paths(condition: Condition, selected: Set[tuple[str, ...]], entity_root: str) -> list[str]:
    """The condition's paths (dotted, as written, each once) that the query does not select.
    `selected` holds the query's selection paths from its root field's response key
    (`("node", "status")`, …); `entity_root` (`invoice`) may stand for that key."""
    roots = {p[0] for p in selected if len(p) == 1 and p[0] != "__typename"}
    unknown: list[str] = []
    for path in paths(condition):
        resolved = _resolve_root(path, roots, entity_root)
        dotted = ".".join(path)
        if (resolved is None or resolved not in selected) and dotted not in unknown:
            unknown.append(dotted)
    return unknown


def _resolve_root(path: tuple[str, ...], roots: Set[str], entity_root: str) -> tuple[str, ...] | None:
    if path[0] in roots:
        return path
    if path[0] == entity_root and len(roots) == 1:
        return (next(iter(roots)), *path[1:])
    return None


# --- evaluation --------------------------------------------------------------------------------


def matches(condition: Condition, payload: Any, entity_root: str) -> bool:
    """Whether a GraphQL result (`{"data": {...}, "errors": …}`) satisfies the condition. A result
    without data (an evaluation error) has no values: only `!=` and `not` can hold on it."""
    data = payload.get("data") if isinstance(payload, dict) else None
    return _holds(condition, data if isinstance(data, dict) else {}, entity_root)


def _holds(condition: Condition, data: dict[str, Any], entity_root: str) -> bool:
    if isinstance(condition, Not):
        return not _holds(condition.operand, data, entity_root)
    if isinstance(condition, All):
        return all(_holds(c, data, entity_root) for c in condition.operands)
    if isinstance(condition, Any_):
        return any(_holds(c, data, entity_root) for c in condition.operands)
    path = condition.path
    if path[0] not in data and path[0] == entity_root:
        roots = [k for k in data if k != "__typename"]
        if len(roots) == 1:
            path = (roots[0], *path[1:])
    found = [v for v in _values(data, path) if v is not None]
    if condition.op == "exists":
        return bool(found)
    if condition.op == "!=":
        return not any(_equal(v, condition.values[0]) for v in found)
    if condition.op == "==":
        return any(_equal(v, condition.values[0]) for v in found)
    if condition.op == "in":
        return any(_equal(v, w) for v in found for w in condition.values)
    return any(_ordered(v, condition.op, condition.values[0]) for v in found)


def _values(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict) and path[0] in node:
        yield from _values(node[path[0]], path[1:])


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    if wanted is None:
        return value is None
    a, b = _number(value), _number(wanted)
    if a is not None and b is not None:
        return a == b
    return isinstance(value, str) and isinstance(wanted, str) and value == wanted


def _ordered(value: Any, op: str, bound: Any) -> bool:
    a, b = _number(value), _number(bound)
    if a is None or b is None:
        if isinstance(value, str) and isinstance(bound, str) and not isinstance(bound, bool):
            a, b = value, bound  # type: ignore[assignment]
        else:
            return False
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]
