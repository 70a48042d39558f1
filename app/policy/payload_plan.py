"""What a compiled webhook query selects, as plain values: the seam between the compiler
(app.evaluation.sql, which reads GraphQL) and the SQL renderer (app.store.payload_sql, which writes
the statement). Pure data, no behaviour: neither side imports the other.

A plan is a tree. Each `Obj` is one row of a marketplace table; its entries are, in the result's
key order, leaves (`Leaf`: a column rendered one way, a global ID, a constant `__typename`, a
value derived from the row), Money objects (`MoneyOf`: a named amount and currency, and which of
Money's fields to show), one part of a Money as a scalar (`MoneyPart`: Marketplacer's `…Cents`,
`…Formatted` and bare decimal fields), relations (`Relation`: a to-one lookup by a foreign key,
or a to-many list of children) and objects made from the same row (`Embedded`: a connection, its
page info, an edge's node). Amounts, currencies and derived values are named (`AMOUNTS`,
`CURRENCIES`, `DERIVED`): the renderer owns their SQL."""

from __future__ import annotations

from dataclasses import dataclass

# How a leaf renders its column (and, for GLOBAL_ID, FOREIGN_ID and TYPENAME, its `arg`).
COLUMN = "column"  # the column's own JSON form: text, integer, boolean, null
ENUM = "enum"  # a lower-case status column as its GraphQL enum name (upper case)
TIMESTAMP = "timestamp"  # timestamptz as Python's isoformat() of an aware UTC datetime
TRIMMED = "trimmed"  # char(n) without its padding (Invoice.currency, Variant.currency)
GLOBAL_ID = "global_id"  # base64("<arg>:<id>"), app.policy.ids.encode
TYPENAME = "typename"  # the constant string `arg`
# the global ID (type `arg`) of the row this row's `column` points at, null when the viewer does
# not see that row or there is none (InvoiceLineItem.variantId)
FOREIGN_ID = "foreign_id"
FALSE = "false"  # the constant false (PageInfo.hasNextPage of a list shown whole)
DERIVED_VALUE = "derived"  # the value `DERIVED[column]` names, computed from the row
LEAF_KINDS = frozenset({COLUMN, ENUM, TIMESTAMP, TRIMMED, GLOBAL_ID, TYPENAME, FOREIGN_ID, FALSE, DERIVED_VALUE})

# Values computed from a row by an expression the renderer owns → the table of that row.
DERIVED = {
    "invoice_status_flags": "invoices",  # Invoice.statusFlags (app.api.status_flags), in the enum's order
    "option_values_end_cursor": "variants",  # the cursor of a variant's last option value link, or null
}

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
        "sale_price",  # variants.sale_price: null when the variant is not on sale
        "lowest_price",  # the lower of a variant's sale_price and price
        # Σ invoice_total over an order's invoices the viewer sees: null unless they are in one currency
        "order_total",
    }
)
CURRENCIES = frozenset(
    {
        "own",  # the row's currency column (variants, invoices)
        "invoice",  # the row's invoice's (by invoice_id, as the viewer sees it; USD when unseen)
        "refund_invoice",  # the row's refund request's invoice's (by refund_request_id)
        "order",  # the one currency of an order's invoices the viewer sees (with "order_total")
    }
)
MONEY_FIELDS = frozenset({"amount", "currencyCode", "formatted", "__typename"})
# A Money's parts shown as scalars: the decimal amount, the amount in cents (a GraphQL Int, which
# graphql-core reports as an error beyond 32 bits), the formatted text.
MONEY_PARTS = frozenset({"amount", "cents", "formatted"})


@dataclass(frozen=True)
class Leaf:
    key: str  # the response key
    kind: str  # one of LEAF_KINDS
    column: str = ""  # the row's column (not for TYPENAME and FALSE; for DERIVED_VALUE the value's name)
    arg: str = ""  # GLOBAL_ID, FOREIGN_ID: the type name encoded; TYPENAME: the name shown


@dataclass(frozen=True)
class MoneyOf:
    """A Money object; null when the amount is (Variant.salePrice, Order.total)."""

    key: str
    amount: str  # one of AMOUNTS
    currency: str  # one of CURRENCIES
    fields: tuple[tuple[str, str], ...]  # (response key, one of MONEY_FIELDS), in order


@dataclass(frozen=True)
class MoneyPart:
    """One part of a Money as a scalar; null when the amount is (Order.totalCents)."""

    key: str
    amount: str  # one of AMOUNTS
    currency: str  # one of CURRENCIES
    part: str  # one of MONEY_PARTS


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
    entries: tuple[Leaf | MoneyOf | MoneyPart | Relation | Embedded, ...]


@dataclass(frozen=True)
class Embedded:
    """An object made from its parent's row (`obj.table` is the parent's), never null: a
    connection over the row's children, its page info, an edge's node."""

    key: str
    obj: Obj


@dataclass(frozen=True)
class RootPlan:
    """The `data` object of a webhook query for one entity: `entries` are the Query type's
    fields — a TYPENAME leaf, or a `Relation` (to-one, `column` "id") to the entity itself."""

    table: str  # the entity's table
    entries: tuple[Leaf | Relation, ...]
