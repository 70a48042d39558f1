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
parent's id (an order's invoices filtered by seller too), ordered by id. The statement runs with
JIT off (sql/payload_sql.sql says why).

Each template states the API resolver it reproduces; text forms are built so that the JSON
PostgreSQL writes decodes to exactly the values graphql-core serializes (the caller re-encodes
it the way every payload is encoded)."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import count

import asyncpg

from app.policy.marketplace_tables import TABLES as TYPE_TABLES
from app.policy.payload_plan import (
    COLUMN,
    DERIVED,
    DERIVED_VALUE,
    ENUM,
    FALSE,
    FOREIGN_ID,
    GLOBAL_ID,
    TIMESTAMP,
    TRIMMED,
    TYPENAME,
    Embedded,
    Leaf,
    MoneyOf,
    MoneyPart,
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
# InvoiceLineItem.variantId: the row by id, as app.store.marketplace.by_id finds it, or null
_FOREIGN_ID = "(SELECT {gid} FROM {source} WHERE t.id = {row}.{fk} AND {visible})"

# Values derived from a row (payload_plan.DERIVED), each the resolver it reproduces.
_DERIVED = {
    # app.api.status_flags.status_flags over the invoice's status, its line items' statuses and its
    # refund requests' statuses (children of a visible invoice, unfiltered), in the enum's order
    "invoice_status_flags": (
        "(SELECT coalesce(json_agg(f.flag ORDER BY f.ord), '[]'::json) FROM"
        " (SELECT count(*) FILTER (WHERE l.status NOT IN ('cancelled', 'refunded')) AS live,"
        " count(*) FILTER (WHERE l.status = 'shipped') AS shipped,"
        " count(*) FILTER (WHERE l.status = 'cancelled') AS cancelled,"
        " count(*) FILTER (WHERE l.status <> 'cancelled') AS uncancelled,"
        " count(*) FILTER (WHERE l.status = 'refunded') AS refunded"
        " FROM invoice_line_items l WHERE l.invoice_id = {row}.id) li,"
        " (SELECT count(*) FILTER (WHERE q.status IN ('awaiting', 'approved')) AS open,"
        " count(*) FILTER (WHERE q.status = 'refunded') AS refunded"
        " FROM refund_requests q WHERE q.invoice_id = {row}.id) rq,"
        " LATERAL (SELECT {row}.status = 'shipped' OR (li.live > 0 AND li.shipped = li.live) AS shipped) s,"
        " LATERAL (VALUES"
        " (1, 'AWAITING_PAYMENT', {row}.status = 'pending'),"
        " (2, 'PAID', {row}.status IN ('paid', 'partially_shipped', 'shipped', 'refunded')),"
        " (3, 'PARTIALLY_SHIPPED', NOT s.shipped AND ({row}.status = 'partially_shipped' OR li.shipped > 0)),"
        " (4, 'SHIPPED', s.shipped),"
        " (5, 'PARTIALLY_CANCELLED', {row}.status <> 'cancelled' AND li.cancelled > 0 AND li.uncancelled > 0),"
        " (6, 'CANCELLED', {row}.status = 'cancelled'),"
        " (7, 'REFUND_REQUESTED', rq.open > 0),"
        " (8, 'PARTIALLY_REFUNDED', {row}.status <> 'refunded' AND (rq.refunded > 0 OR li.refunded > 0)),"
        " (9, 'REFUNDED', {row}.status = 'refunded')) f(ord, flag, holds)"
        " WHERE f.holds)"
    ),
    # PageInfo.endCursor of Variant.optionValues: app.api.pagination.encode_cursor of the last link
    "option_values_end_cursor": (
        "(SELECT "
        + _GLOBAL_ID.format(type_name="cursor", x="max(d.id)")
        + " FROM variant_option_value_details d WHERE d.variant_id = {row}.id)"
    ),
}

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
    "sale_price": "{row}.sale_price",  # Variant.salePrice: null when not on sale
    # Variant.lowestPrice: the sale price only when it is below the price
    "lowest_price": "CASE WHEN {row}.sale_price < {row}.price THEN {row}.sale_price ELSE {row}.price END",
    # Order.total: Σ of the invoice totals of the order's invoices the viewer sees (its loader's
    # filter), null when they are none or in more than one currency (stripped, case kept)
    "order_total": (
        "(SELECT CASE WHEN count(DISTINCT btrim(i.currency::text)) = 1 THEN sum("
        "(SELECT coalesce(sum(l.quantity * l.unit_price), 0) FROM invoice_line_items l WHERE l.invoice_id = i.id)"
        " + (SELECT coalesce(sum(a.amount), 0) FROM invoice_amendments a WHERE a.invoice_id = i.id)) END"
        " FROM invoices i WHERE i.order_id = {row}.id AND (:seller_id::bigint IS NULL OR i.seller_id = :seller_id))"
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
    # the currency of the order's invoices the viewer sees (used when there is exactly one)
    "order": (
        "(SELECT min(btrim(i.currency::text)) FROM invoices i WHERE i.order_id = {row}.id"
        " AND (:seller_id::bigint IS NULL OR i.seller_id = :seller_id))"
    ),
}
# app.api.money.format_money; `to_char`'s `,` and `.` are not locale-dependent
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "AUD": "A$", "CAD": "C$", "NZD": "NZ$", "JPY": "¥"}
_DIGITS = "FM" + "999," * 9 + "990.00"  # up to 30 integer digits, grouped by thousands
# a Money (object or part) is null when its amount is (Variant.salePrice, Order.total)
_MONEY = "(SELECT {value} FROM (SELECT round({amount}, 2) AS a, upper(btrim({currency})) AS c) m WHERE m.a IS NOT NULL)"
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
# A value graphql-core reports as a field error rather than serializes: the object
# `{"hq_error": …}`. A quote inside a JSON string is escaped, so `{"hq_error"` in the text can only
# open an object whose first key is `hq_error`, and the keys are the merged document's aliases
# (`f0`, `hq_t` …), never that: the text holds the mark exactly when some value of the entity's
# data is an error (were a key ever `hq_error`, its entity would go to graphql-core: slower, never
# wrong). That entity is evaluated by graphql-core, which writes the error (message, locations,
# path) as it does for any query (fetch_data: None).
ERROR_MARK = '{"hq_error"'
_ERROR = "json_build_object('hq_error', '{reason}'::text)"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # GraphQL Int: graphql-core refuses to serialize beyond
# Money's parts as scalars (app.api.money: `cents`, `formatted`; a bare amount is Money.amount's text)
_MONEY_PARTS = {
    "amount": _MONEY_FIELDS["amount"],
    "formatted": _MONEY_FIELDS["formatted"],
    "cents": (
        f"CASE WHEN m.a * 100 BETWEEN {INT_MIN} AND {INT_MAX} THEN to_json((m.a * 100)::integer)"
        f" ELSE {_ERROR.format(reason='Int beyond 32 bits')} END"
    ),
}
_NEEDS_CURRENCY = frozenset({"currencyCode", "formatted"})


class _Renderer:
    def __init__(self) -> None:
        self._rows = (f"n{i}" for i in count())

    def root(self, plan: RootPlan) -> str:
        source, seller = _owned(plan.table)
        row = next(self._rows)
        pairs = []
        for entry in plan.entries:
            if isinstance(entry, Leaf):
                pairs.append((entry.key, self.leaf(entry, row, plan.table)))
            else:
                if entry.obj.table != plan.table:
                    raise ValueError(f"the entity is a row of {plan.table}, not of {entry.obj.table}")
                pairs.append((entry.key, f"CASE WHEN {row}.id IS NULL THEN NULL ELSE {self.obj(entry.obj, row)} END"))
        return _ROOT.format(data=_object(pairs), source=source, visible=_VISIBLE.format(seller=seller), row=row)

    def obj(self, obj: Obj, row: str) -> str:
        pairs = []
        for entry in obj.entries:
            if isinstance(entry, Leaf):
                pairs.append((entry.key, self.leaf(entry, row, obj.table)))
            elif isinstance(entry, MoneyOf):
                value = f"json_build_object({_pairs([(k, self.money_field(name)) for k, name in entry.fields])})"
                needs_currency = any(name in _NEEDS_CURRENCY for _, name in entry.fields)
                pairs.append((entry.key, self.money(entry.amount, entry.currency, needs_currency, value, row)))
            elif isinstance(entry, MoneyPart):
                if entry.part not in _MONEY_PARTS:
                    raise ValueError(f"unknown Money part {entry.part!r}")
                value = _MONEY_PARTS[entry.part]
                needs_currency = entry.part == "formatted"
                pairs.append((entry.key, self.money(entry.amount, entry.currency, needs_currency, value, row)))
            elif isinstance(entry, Embedded):
                if entry.obj.table != obj.table:  # made from this row: the same table
                    raise ValueError(f"an object embedded in a row of {obj.table} is not of {entry.obj.table}")
                pairs.append((entry.key, self.obj(entry.obj, row)))
            else:
                pairs.append((entry.key, self.relation(entry, row)))
        return _object(pairs)

    def leaf(self, leaf: Leaf, row: str, table: str) -> str:
        if leaf.kind == TYPENAME:
            return f"'{_name(leaf.arg)}'::text"
        if leaf.kind == FALSE:
            return "false"
        if leaf.kind == DERIVED_VALUE:
            if DERIVED.get(leaf.column) != table or leaf.column not in _DERIVED:
                raise ValueError(f"no derived value {leaf.column!r} of a row of {table}")
            return _DERIVED[leaf.column].format(row=row)
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
        if leaf.kind == FOREIGN_ID:
            if leaf.arg not in TYPE_TABLES:
                raise ValueError(f"unknown type {leaf.arg!r}")
            source, seller = _owned(TYPE_TABLES[leaf.arg])
            gid = _GLOBAL_ID.format(type_name=_name(leaf.arg), x="t.id")
            return _FOREIGN_ID.format(
                gid=gid, source=source, row=row, fk=_column(leaf.column), visible=_VISIBLE.format(seller=seller)
            )
        raise ValueError(f"unknown leaf kind {leaf.kind!r}")

    @staticmethod
    def money_field(name: str) -> str:
        if name not in _MONEY_FIELDS:
            raise ValueError(f"unknown Money field {name!r}")
        return _MONEY_FIELDS[name]

    @staticmethod
    def money(amount: str, currency: str, needs_currency: bool, value: str, row: str) -> str:
        """`value` (over `m.a`, the amount to the cent, and `m.c`, the currency) of one Money."""
        if amount not in _AMOUNTS or currency not in _CURRENCIES:
            raise ValueError(f"unknown Money amount {amount!r} or currency {currency!r}")
        return _MONEY.format(
            value=value,
            amount=_AMOUNTS[amount].format(row=row),
            # a currency nothing shows is not looked up (for `…Cents`, Money { amount })
            currency=_CURRENCIES[currency].format(row=row) if needs_currency else "NULL::text",
        )

    def relation(self, relation: Relation, parent: str) -> str:
        row = next(self._rows)
        if relation.obj.table != relation.table:
            raise ValueError(f"rows of {relation.table} are not rows of {relation.obj.table}")
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
) -> list[str | None]:
    """Each entity's `data` JSON text, in the order of `ids`; None for an entity whose data holds
    a value graphql-core reports as an error (a `…Cents` beyond 32 bits): the caller evaluates it
    there. Raises `TimeoutError` when the statement runs longer than `timeout_s` (asyncpg cancels
    it on the server)."""
    # One statement, no transaction: the pool's connections run without JIT (db.SERVER_SETTINGS).
    rows = await conn.fetch(*statement(plan)(ids=ids, seller_id=seller_id), timeout=timeout_s)
    return [None if ERROR_MARK in r["data"] else r["data"] for r in rows]
