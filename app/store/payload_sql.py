"""The statements of compiled webhook queries: a plan (app.policy.payload_plan, made by
app.evaluation.sql) rendered as one SELECT that builds the `data` object of every entity of a
batch as JSON, in the plan's key order.

The statement is dynamic, so it is assembled here from the templates below, and only from them:
tables, foreign keys and columns must be in the marketplace's whitelists (app.store.marketplace)
or be plain lower-case identifiers from the compiler's field table, response keys must be GraphQL
names, and every value a caller supplies (the entity ids, the viewer's seller) is a parameter.
Anything else is a `ValueError`, never SQL.

Visibility is the API loaders' (app.store.marketplace), row for row: the entity and every to-one
relation are looked up by id with the viewer's seller predicate, children are read by their
parent's id (an order's invoices filtered by seller too), ordered by id.

Each template states the API resolver it reproduces; text forms are built so that the JSON
PostgreSQL writes decodes to exactly the values graphql-core serializes (the caller re-encodes
it the way every payload is encoded)."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import count

import asyncpg

from app.policy.payload_plan import (
    COLUMN,
    ENUM,
    GLOBAL_ID,
    TIMESTAMP,
    TRIMMED,
    TYPENAME,
    Leaf,
    MoneyOf,
    Obj,
    Relation,
    RootPlan,
)
from app.store.marketplace import CHILDREN, INVOICE_SELLER_FILTER, OWNERSHIP, TABLES
from app.store.queries import Query, compile_block

STATEMENTS_KEPT = 256  # rendered statements (one per compiled group in use)

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*\Z")  # a GraphQL name: a response key or a type name
_COLUMN = re.compile(r"[a-z_]+\Z")
_CHILD_LINKS = frozenset(CHILDREN.values())  # (child table, foreign key)

_VISIBLE = "(:seller_id::bigint IS NULL OR {seller} = :seller_id)"
_ROOT = (
    "SELECT {data}::text AS data FROM unnest(:ids::bigint[]) WITH ORDINALITY AS k(id, ord)"
    " LEFT JOIN LATERAL (SELECT t.* FROM {source} WHERE t.id = k.id AND {visible}) {row} ON true"
    " ORDER BY k.ord"
)
# by id, as app.store.marketplace.by_id: a foreign row is not found
_ONE = "(SELECT {obj} FROM (SELECT t.* FROM {source} WHERE t.id = {parent}.{fk} AND {visible}) {row})"
_ONE_ORDER = (
    "(SELECT {obj} FROM (SELECT t.* FROM orders t WHERE t.id = {parent}.{fk} AND (:seller_id::bigint IS NULL"
    " OR EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = t.id AND i.seller_id = :seller_id))) {row})"
)
# children, as app.store.marketplace.children: ordered by id, [] when none
_MANY = (
    "(SELECT coalesce(json_agg({obj} ORDER BY {row}.id), '[]'::json)"
    " FROM (SELECT t.* FROM {table} t WHERE t.{fk} = {parent}.id{seller_filter}) {row})"
)
# datetime.isoformat() of the aware UTC datetime asyncpg returns: microseconds only when non-zero
_TIMESTAMP = (
    "to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({x} AT TIME ZONE 'UTC', 'US')"
    " = '000000' THEN '' ELSE to_char({x} AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)
# app.policy.ids.encode: base64 of "Type:id" (PostgreSQL breaks base64 lines at 76 characters)
_GLOBAL_ID = "translate(encode(convert_to('{type_name}:' || {x}, 'UTF8'), 'base64'), E'\\n', '')"

# Money (app.api.money): the amount to the cent, the currency stripped and upper-cased.
_AMOUNTS = {
    "price": "{row}.price",
    "unit_price": "{row}.unit_price",
    "amount": "{row}.amount",
    "line_total": "{row}.quantity * {row}.unit_price",  # InvoiceLineItem.total
    "invoice_subtotal": (  # Invoice.subtotal
        "(SELECT coalesce(sum(l.quantity * l.unit_price), 0) FROM invoice_line_items l WHERE l.invoice_id = {row}.id)"
    ),
    "invoice_total": (  # Invoice.total
        "(SELECT coalesce(sum(l.quantity * l.unit_price), 0) FROM invoice_line_items l WHERE l.invoice_id = {row}.id)"
        " + (SELECT coalesce(sum(a.amount), 0) FROM invoice_amendments a WHERE a.invoice_id = {row}.id)"
    ),
    "refund_total": (  # RefundRequest.total
        "(SELECT coalesce(sum(l.amount), 0) FROM refund_request_line_items l WHERE l.refund_request_id = {row}.id)"
    ),
}
_CURRENCIES = {
    "own": "{row}.currency::text",
    # the invoice as the viewer's loaders find it, "USD" when they do not (RefundRequest._currency,
    # invoicing.line_item); under Invoice.lineItems/amendments that is the parent invoice
    "invoice": (
        "coalesce((SELECT i.currency::text FROM invoices i WHERE i.id = {row}.invoice_id"
        " AND (:seller_id::bigint IS NULL OR i.seller_id = :seller_id)), 'USD')"
    ),
    "refund_invoice": (
        "coalesce((SELECT i.currency::text FROM refund_requests rq JOIN invoices i ON i.id = rq.invoice_id"
        " WHERE rq.id = {row}.refund_request_id AND (:seller_id::bigint IS NULL OR i.seller_id = :seller_id)), 'USD')"
    ),
}
# app.api.money.format_money; `to_char`'s `,` and `.` are not locale-dependent
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "AUD": "A$", "CAD": "C$", "NZD": "NZ$", "JPY": "¥"}
_DIGITS = "FM" + "999," * 9 + "990.00"  # up to 30 integer digits, grouped by thousands
_MONEY = "(SELECT json_build_object({fields}) FROM (SELECT round({amount}, 2) AS a, upper(btrim({currency})) AS c) m)"
_MONEY_FIELDS = {
    "amount": "m.a::text",
    "currencyCode": "m.c",
    "__typename": "'Money'::text",
    "formatted": (
        "CASE WHEN m.a < 0 THEN '-' ELSE '' END || CASE m.c "
        + " ".join(f"WHEN '{code}' THEN '{symbol}'" for code, symbol in _SYMBOLS.items())
        + f" ELSE '' END || to_char(abs(m.a), '{_DIGITS}') || CASE WHEN m.c IN ("
        + ", ".join(f"'{code}'" for code in _SYMBOLS)
        + ") THEN '' ELSE ' ' || m.c END"
    ),
}


class _Renderer:
    def __init__(self) -> None:
        self._rows = (f"n{i}" for i in count())

    def root(self, plan: RootPlan) -> str:
        source, seller = _owned(plan.table)
        row = next(self._rows)
        pairs = []
        for entry in plan.entries:
            if isinstance(entry, Leaf):
                pairs.append((entry.key, self.leaf(entry, row)))
            else:
                pairs.append((entry.key, f"CASE WHEN {row}.id IS NULL THEN NULL ELSE {self.obj(entry.obj, row)} END"))
        return _ROOT.format(data=_object(pairs), source=source, visible=_VISIBLE.format(seller=seller), row=row)

    def obj(self, obj: Obj, row: str) -> str:
        pairs = []
        for entry in obj.entries:
            if isinstance(entry, Leaf):
                pairs.append((entry.key, self.leaf(entry, row)))
            elif isinstance(entry, MoneyOf):
                pairs.append((entry.key, self.money(entry, row)))
            else:
                pairs.append((entry.key, self.relation(entry, row)))
        return _object(pairs)

    def leaf(self, leaf: Leaf, row: str) -> str:
        if leaf.kind == TYPENAME:
            return f"'{_name(leaf.arg)}'::text"
        x = f"{row}.{_column(leaf.column)}"
        if leaf.kind == COLUMN:
            return x
        if leaf.kind == ENUM:
            return f"upper({x})"
        if leaf.kind == TRIMMED:
            return f"btrim({x}::text)"
        if leaf.kind == TIMESTAMP:
            return _TIMESTAMP.format(x=x)
        if leaf.kind == GLOBAL_ID:
            return _GLOBAL_ID.format(type_name=_name(leaf.arg), x=x)
        raise ValueError(f"unknown leaf kind {leaf.kind!r}")

    def money(self, money: MoneyOf, row: str) -> str:
        try:
            amount = _AMOUNTS[money.amount].format(row=row)
            currency = _CURRENCIES[money.currency].format(row=row)
            pairs = [(key, _MONEY_FIELDS[name]) for key, name in money.fields]
        except KeyError as exc:
            raise ValueError(f"unknown Money part {exc}") from None
        return _MONEY.format(fields=_pairs(pairs), amount=amount, currency=currency)

    def relation(self, relation: Relation, parent: str) -> str:
        row = next(self._rows)
        obj = self.obj(relation.obj, row)
        fk = _column(relation.column)
        if relation.many:
            if (relation.table, relation.column) not in _CHILD_LINKS:
                raise ValueError(f"no link from {relation.table}.{relation.column}")
            seller_filter = INVOICE_SELLER_FILTER if relation.table == "invoices" else ""
            return _MANY.format(
                obj=obj, row=row, table=relation.table, fk=fk, parent=parent, seller_filter=seller_filter
            )
        if relation.table == "orders":
            return _ONE_ORDER.format(obj=obj, parent=parent, fk=fk, row=row)
        source, seller = _owned(relation.table)
        return _ONE.format(
            obj=obj, source=source, parent=parent, fk=fk, visible=_VISIBLE.format(seller=seller), row=row
        )


def _owned(table: str) -> tuple[str, str]:
    if table not in OWNERSHIP:
        raise ValueError(f"unknown table {table!r}")
    return OWNERSHIP[table]


def _name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return name


def _column(column: str) -> str:
    if not _COLUMN.match(column):
        raise ValueError(f"not a column name: {column!r}")
    return column


def _pairs(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"'{_name(key)}', {value}" for key, value in pairs)


def _object(pairs: list[tuple[str, str]]) -> str:
    if len(pairs) > 50:  # json_build_object takes at most 100 arguments
        raise ValueError(f"an object of {len(pairs)} keys")
    return f"json_build_object({_pairs(pairs)})"


@lru_cache(maxsize=STATEMENTS_KEPT)
def statement(plan: RootPlan) -> Query:
    """The statement for `plan`: `(ids=[…], seller_id=…)` → one row per id, in order, whose `data`
    is the entity's `data` object as JSON text (`seller_id` None for the operator)."""
    if plan.table not in TABLES:
        raise ValueError(f"unknown table {plan.table!r}")
    return compile_block("compiled_payloads", _Renderer().root(plan))


async def fetch_data(
    conn: asyncpg.Connection, plan: RootPlan, ids: list[int], seller_id: int | None, timeout_s: float
) -> list[str]:
    """Each entity's `data` JSON text, in the order of `ids`. Raises `TimeoutError` when the
    statement runs longer than `timeout_s` (asyncpg cancels it on the server)."""
    rows = await conn.fetch(*statement(plan)(ids=ids, seller_id=seller_id), timeout=timeout_s)
    return [r["data"] for r in rows]
