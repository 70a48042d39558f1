"""What a compiled webhook query selects, as plain values: the seam between the compiler
(app.evaluation.sql, which reads GraphQL) and the SQL renderer (app.store.payload_sql, which writes
the statement). Pure data, no behaviour: neither side imports the other.

A plan is a tree. Each `Obj` is one row of a marketplace table; its entries are, in the result's
key order, leaves (`Leaf`: a column rendered one way, a global ID, a constant `__typename`),
Money objects (`MoneyOf`: a named amount and currency, and which of Money's fields to show),
and relations (`Relation`: a to-one lookup by a foreign key, or a to-many list of children).
Amounts and currencies are named (`AMOUNTS`, `CURRENCIES`): the renderer owns their SQL."""

from __future__ import annotations

from dataclasses import dataclass

# How a leaf renders its column (or, for GLOBAL_ID and TYPENAME, its `arg`).
COLUMN = "column"  # the column's own JSON form: text, integer, boolean, null
ENUM = "enum"  # a lower-case status column as its GraphQL enum name (upper case)
TIMESTAMP = "timestamp"  # timestamptz as Python's isoformat() of an aware UTC datetime
TRIMMED = "trimmed"  # char(n) without its padding (Invoice.currency, Variant.currency)
GLOBAL_ID = "global_id"  # base64("<arg>:<id>"), app.policy.ids.encode
TYPENAME = "typename"  # the constant string `arg`
LEAF_KINDS = frozenset({COLUMN, ENUM, TIMESTAMP, TRIMMED, GLOBAL_ID, TYPENAME})

# Amounts of Money a row can show, and the currency it shows them in.
AMOUNTS = frozenset(
    {
        "price",  # variants.price
        "unit_price",  # invoice_line_items.unit_price
        "amount",  # invoice_amendments.amount, refund_request_line_items.amount
        "line_total",  # quantity × unit_price of a line item
        "invoice_subtotal",  # Σ quantity × unit_price over an invoice's line items
        "invoice_total",  # the subtotal plus Σ amendments
        "refund_total",  # Σ amount over a refund request's line items
    }
)
CURRENCIES = frozenset(
    {
        "own",  # the row's currency column (variants, invoices)
        "invoice",  # the row's invoice's (by invoice_id, as the viewer sees it; USD when unseen)
        "refund_invoice",  # the row's refund request's invoice's (by refund_request_id)
    }
)
MONEY_FIELDS = frozenset({"amount", "currencyCode", "formatted", "__typename"})


@dataclass(frozen=True)
class Leaf:
    key: str  # the response key
    kind: str  # one of LEAF_KINDS
    column: str = ""  # the row's column (not for TYPENAME)
    arg: str = ""  # GLOBAL_ID: the type name encoded; TYPENAME: the name shown


@dataclass(frozen=True)
class MoneyOf:
    key: str
    amount: str  # one of AMOUNTS
    currency: str  # one of CURRENCIES
    fields: tuple[tuple[str, str], ...]  # (response key, one of MONEY_FIELDS), in order


@dataclass(frozen=True)
class Relation:
    key: str
    table: str  # the related rows' table
    column: str  # to-one: this row's foreign key; to-many: the children's foreign key to this row
    many: bool  # a list of children, ordered by id
    obj: Obj


@dataclass(frozen=True)
class Obj:
    """One row's JSON object; null where the row is missing or not visible to the viewer."""

    table: str
    entries: tuple[Leaf | MoneyOf | Relation, ...]


@dataclass(frozen=True)
class RootPlan:
    """The `data` object of a webhook query for one entity: `entries` are the Query type's
    fields — a TYPENAME leaf, or a `Relation` (to-one, `column` "id") to the entity itself."""

    table: str  # the entity's table
    entries: tuple[Leaf | Relation, ...]
