"""Webhook queries compiled to one SQL statement per (entity type, visibility) group and batch.

The group's queries are merged first (app.evaluation.merge): the merged document asks for every
distinct field once, under a private alias, so the statement computes each relation and total
once however many webhooks share it. This module turns the merged document into a plan
(app.policy.payload_plan) that app.store.payload_sql renders as SQL: PostgreSQL builds the
merged `data` object of every entity of the batch as JSON, and each webhook's payload is cut out
of it by the same projection the merged graphql-core execution uses — key order included. The
payload text is then encoded as the graphql-core path encodes it (app.policy.envelope), so it is
byte-identical: hashes, skip-identical and signatures do not depend on the path.

`FIELDS` is the one table from GraphQL fields to SQL: a field is compiled exactly when it is
there. Each entry states what the API's resolver (app/api/marketplace/) does, in plan terms:

- scalars and enums are columns (enums upper-cased: every enum name is its value in upper case);
- `id` is the global ID `base64("Type:id")`; `createdAt`/`updatedAt`/`shippedAt` render as Python's
  `datetime.isoformat()` of the UTC datetime asyncpg returns (microseconds only when non-zero);
- Money is `{amount, currencyCode, formatted}` with the amount to the cent, the currency upper-cased
  and `formatted` as `app.api.money.format_money` writes it; Marketplacer's `…Cents`, `…Formatted`
  and bare decimal fields (`lowestPrice`) are one part of the same Money (`Part`). A `…Cents`
  past GraphQL Int's 32 bits is an error in graphql-core: the statement marks it, and that
  entity is evaluated by graphql-core, which writes the payload's `errors` (app.engine.compiled);
- relations use the API's loaders' statements and visibility (app.store.marketplace): to-one
  lookups by id with the viewer's seller predicate, to-many children by their parent, ordered by id;
  types that are no table's rows (Variant.optionValues's connection, its page info, an option
  value's type) are made from the row they hang off (`Same`);
- values with logic of their own (Invoice.statusFlags, the connection's endCursor) are named
  expressions the store owns (payload_plan.DERIVED), checked against their resolvers by the
  differential test.

What falls back to graphql-core (the query is executed as before, and `fallback_reason` says why):
- a field missing from `FIELDS` (a new field nobody mapped yet, or one with Python-only logic):
  none of the marketplace's today (tests/unit/test_compiled_plan.py lists any as NOT_COMPILED);
- a field with arguments below the root, and root fields other than `node(id: $id)`, the
  entity's own root field (`invoice(id: $id)`…) and `__typename`;
- what merging refuses (introspection fields, directives other than literal @skip/@include);
- more than `MAX_KEYS` distinct fields in one object (one SQL call takes at most 100 arguments).
A group whose statement breaches the time budget is evaluated by graphql-core too, which
attributes the breach to the queries that spent it (app.evaluation.execute).

Pure: no I/O. Not compiled but equal by construction: the string forms above assume currency codes
and statuses in ASCII, as the schema's CHECK constraints and the fixtures have them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from app.evaluation.compile import CompiledQuery
from app.evaluation.merge import MergedQuery, Unmergeable, collect_fields, merge_queries, projector
from app.policy.marketplace_tables import CHILD_TABLES, TABLES
from app.policy.payload_plan import (
    COLUMN,
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
from app.types import EntityType

MAX_KEYS = 49  # keys of one JSON object: json_build_object takes at most 100 arguments
PLAN_CACHE_SIZE = 256  # compiled groups kept: one per (query set, entity type) in use
REASON_CACHE_SIZE = 4096  # queries whose fallback reason (or None) is kept: one per stored query text

# The entity's root fields: `node(id: $id)` and its own.
ROOT_FIELDS: dict[str, EntityType | None] = {
    "node": None,
    "invoice": EntityType.INVOICE,
    "variant": EntityType.VARIANT,
    "refundRequest": EntityType.REFUND_REQUEST,
}
ROW_TABLES = {**TABLES, **CHILD_TABLES}  # object type → the table its objects are rows of


@dataclass(frozen=True)
class Col:
    """A leaf from the row: `kind` from app.policy.payload_plan, `column` the row's column, `arg`
    the type a (foreign) global ID encodes."""

    kind: str
    column: str = ""
    arg: str = ""


@dataclass(frozen=True)
class Money:
    """A Money object (null when the amount is)."""

    amount: str  # payload_plan.AMOUNTS
    currency: str  # payload_plan.CURRENCIES


@dataclass(frozen=True)
class Part:
    """One part of a Money as a scalar: "amount", "cents" or "formatted" (payload_plan.MONEY_PARTS)."""

    amount: str
    currency: str
    part: str


@dataclass(frozen=True)
class One:
    """A to-one relation: the row of `type_name` whose id is this row's `column`."""

    type_name: str
    column: str


@dataclass(frozen=True)
class Many:
    """A to-many relation: the rows of `type_name` whose `column` is this row's id."""

    type_name: str
    column: str


@dataclass(frozen=True)
class Same:
    """An object of `type_name` made from this same row: a connection over its children, the
    connection's page info, an edge's node."""

    type_name: str


Form = Col | Money | Part | One | Many | Same


def _cents(amount: str, currency: str) -> Part:
    return Part(amount, currency, "cents")


def _formatted(amount: str, currency: str) -> Part:
    return Part(amount, currency, "formatted")


def _node(**fields: Form) -> dict[str, Form]:
    return {
        "legacyId": Col(COLUMN, "id"),
        "createdAt": Col(TIMESTAMP, "created_at"),
        "updatedAt": Col(TIMESTAMP, "updated_at"),
        **fields,
    }


# (type, field) → SQL form; `id` (the global ID of the row's `id`) and `__typename` are compiled for
# every type that does not map them itself.
FIELDS: dict[str, dict[str, Form]] = {
    "Seller": _node(
        name=Col(COLUMN, "name"),
        businessName=Col(COLUMN, "business_name"),
        externalIds=Many("ExternalId", "seller_id"),
        products=Many("Product", "seller_id"),
    ),
    "Product": _node(
        title=Col(COLUMN, "title"),
        description=Col(COLUMN, "description"),
        seller=One("Seller", "seller_id"),
        variants=Many("Variant", "product_id"),
    ),
    "Variant": _node(
        sku=Col(COLUMN, "sku"),
        barcode=Col(COLUMN, "barcode"),
        countOnHand=Col(COLUMN, "count_on_hand"),
        infiniteQuantity=Col(COLUMN, "infinite_quantity"),
        price=Money("price", "own"),
        salePrice=Money("sale_price", "own"),
        currency=Col(TRIMMED, "currency"),
        priceCents=_cents("price", "own"),
        priceFormatted=_formatted("price", "own"),
        lowestPrice=Part("lowest_price", "own", "amount"),  # a Decimal: Money.amount's text
        lowestPriceCents=_cents("lowest_price", "own"),
        lowestPriceFormatted=_formatted("lowest_price", "own"),
        optionValues=Same("OptionValueConnection"),
        product=One("Product", "product_id"),
    ),
    "Order": _node(
        buyerName=Col(COLUMN, "buyer_name"),
        buyerEmail=Col(COLUMN, "buyer_email"),
        status=Col(ENUM, "status"),
        externalId=Col(COLUMN, "external_id"),
        externalIds=Many("ExternalId", "order_id"),
        total=Money("order_total", "order"),
        totalCents=_cents("order_total", "order"),
        totalFormatted=_formatted("order_total", "order"),
        invoices=Many("Invoice", "order_id"),  # a seller sees only its own: the store's filter
    ),
    "Invoice": _node(
        status=Col(ENUM, "status"),
        currency=Col(TRIMMED, "currency"),
        order=One("Order", "order_id"),
        seller=One("Seller", "seller_id"),
        lineItems=Many("InvoiceLineItem", "invoice_id"),
        shipments=Many("Shipment", "invoice_id"),
        amendments=Many("InvoiceAmendment", "invoice_id"),
        refundRequests=Many("RefundRequest", "invoice_id"),
        subtotal=Money("invoice_subtotal", "own"),
        total=Money("invoice_total", "own"),
        subtotalCents=_cents("invoice_subtotal", "own"),
        subtotalFormatted=_formatted("invoice_subtotal", "own"),
        totalCents=_cents("invoice_total", "own"),
        totalFormatted=_formatted("invoice_total", "own"),
        statusFlags=Col(DERIVED_VALUE, "invoice_status_flags"),
        externalIds=Many("ExternalId", "invoice_id"),
    ),
    "InvoiceLineItem": _node(
        quantity=Col(COLUMN, "quantity"),
        unitPrice=Money("unit_price", "invoice"),
        status=Col(ENUM, "status"),
        total=Money("line_total", "invoice"),
        unitPriceCents=_cents("unit_price", "invoice"),
        unitPriceFormatted=_formatted("unit_price", "invoice"),
        totalCents=_cents("line_total", "invoice"),
        totalFormatted=_formatted("line_total", "invoice"),
        variantId=Col(FOREIGN_ID, "variant_id", "Variant"),
        variant=One("Variant", "variant_id"),
        invoice=One("Invoice", "invoice_id"),
    ),
    "Shipment": _node(
        carrier=Col(COLUMN, "carrier"),
        trackingNumber=Col(COLUMN, "tracking_number"),
        trackingLink=Col(COLUMN, "tracking_link"),
        status=Col(ENUM, "status"),
        shippedAt=Col(TIMESTAMP, "shipped_at"),
        items=Many("ShipmentItem", "shipment_id"),
        shippedItems=Many("ShipmentItem", "shipment_id"),
    ),
    "ShipmentItem": _node(
        quantity=Col(COLUMN, "quantity"),
        invoiceLineItem=One("InvoiceLineItem", "invoice_line_item_id"),
        lineItem=One("InvoiceLineItem", "invoice_line_item_id"),
    ),
    "InvoiceAmendment": _node(
        reason=Col(COLUMN, "reason"),
        amount=Money("amount", "invoice"),
        amountCents=_cents("amount", "invoice"),
        amountFormatted=_formatted("amount", "invoice"),
    ),
    "RefundRequest": _node(
        status=Col(ENUM, "status"),
        reason=Col(COLUMN, "reason"),
        invoice=One("Invoice", "invoice_id"),
        lineItems=Many("RefundRequestLineItem", "refund_request_id"),
        total=Money("refund_total", "invoice"),
        totalCents=_cents("refund_total", "invoice"),
        totalFormatted=_formatted("refund_total", "invoice"),
    ),
    "RefundRequestLineItem": _node(
        quantity=Col(COLUMN, "quantity"),
        amount=Money("amount", "refund_invoice"),
        status=Col(ENUM, "status"),
        reason=Col(COLUMN, "reason"),
        amountCents=_cents("amount", "refund_invoice"),
        amountFormatted=_formatted("amount", "refund_invoice"),
        invoiceLineItem=One("InvoiceLineItem", "invoice_line_item_id"),
    ),
    "ExternalId": {"key": Col(COLUMN, "key"), "value": Col(COLUMN, "value")},
    # Variant.optionValues: the whole list as one page, over rows of variant_option_value_details
    # (one per link; app.api.marketplace.OptionValue.from_row). PageInfo is reached from here only.
    "OptionValueConnection": {
        "edges": Many("OptionValueEdge", "variant_id"),
        "pageInfo": Same("PageInfo"),
        "nodes": Many("OptionValue", "variant_id"),
    },
    "PageInfo": {"hasNextPage": Col(FALSE), "endCursor": Col(DERIVED_VALUE, "option_values_end_cursor")},
    "OptionValueEdge": {"cursor": Col(GLOBAL_ID, "id", "cursor"), "node": Same("OptionValue")},
    "OptionValue": {
        "id": Col(GLOBAL_ID, "option_value_id", "OptionValue"),
        "legacyId": Col(COLUMN, "option_value_id"),
        "name": Col(COLUMN, "name"),
        "optionType": Same("OptionType"),
    },
    "OptionType": {
        "id": Col(GLOBAL_ID, "option_type_id", "OptionType"),
        "legacyId": Col(COLUMN, "option_type_id"),
        "name": Col(COLUMN, "option_type_name"),
    },
}


class Unsupported(Exception):
    """The query (or group) has no faithful SQL form; the message says why."""


@dataclass(frozen=True)
class CompiledGroup:
    """Queries of one entity type compiled together: the merged document's plan, and the merge
    that cuts each query's `data` out of the merged `data`."""

    queries: tuple[CompiledQuery, ...]
    merged: MergedQuery
    plan: RootPlan
    projectors: dict[str, Callable[[Any], Any]]  # query text → its generated projection

    def project(self, query: CompiledQuery, data: dict[str, Any]) -> dict[str, Any]:
        """`query`'s payload from the merged `data` the statement built for one entity."""
        return {"data": self.projectors[query.text](data)}


Fields = dict[str, dict[str, Form]]
Fragments = dict[str, FragmentDefinitionNode]
_UNMERGEABLE = "the query cannot be merged (introspection, or a directive other than a literal @skip/@include)"
_CACHE: OrderedDict[tuple[int, tuple[str, ...], EntityType], CompiledGroup | str] = OrderedDict()


def compile_group(schema: Any, queries: Sequence[CompiledQuery], fields: Fields = FIELDS) -> CompiledGroup | str:
    """The compiled group for these queries (of one entity type; cached), or why it falls back.
    `schema` is the strawberry schema the API serves; `fields` the field table (tests pass a
    smaller one to exercise the fallback)."""
    entity_type = queries[0].entity_type
    key = (id(schema), tuple(sorted({q.text for q in queries})), entity_type)
    if fields is not FIELDS:  # another table (a test's): not cached, its id may be reused later
        return _compile_group(schema, queries, entity_type, fields)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    result = _CACHE[key] = _compile_group(schema, queries, entity_type, fields)
    if len(_CACHE) > PLAN_CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _compile_group(
    schema: Any, queries: Sequence[CompiledQuery], entity_type: EntityType, fields: Fields
) -> CompiledGroup | str:
    merged = merge_queries(schema._schema, queries)
    if merged is None:
        return _UNMERGEABLE
    try:
        plan = _root(schema._schema, merged.document, entity_type, fields)
    except Unsupported as exc:
        return str(exc)
    distinct = tuple(dict.fromkeys(queries))
    projectors = {q.text: projector(merged.plans[q.text]) for q in distinct}
    return CompiledGroup(distinct, merged, plan, projectors)


_REASONS: OrderedDict[tuple[int, str, EntityType], str | None] = OrderedDict()


def fallback_reason(schema: Any, query: CompiledQuery, fields: Fields = FIELDS) -> str | None:
    """Why `query` is evaluated by graphql-core rather than compiled to SQL; None when it compiles.
    Kept apart from the groups' cache, which the engine's many single queries would otherwise evict."""
    key = (id(schema), query.text, query.entity_type)
    if fields is FIELDS and key in _REASONS:
        _REASONS.move_to_end(key)
        return _REASONS[key]
    # The query's own document, not merged: merging validates a new document (milliseconds), and
    # an engine starting with a thousand stored queries asks this for each.
    reason: str | None = None
    try:
        _root(schema._schema, query.document, query.entity_type, fields)
    except Unsupported as exc:
        reason = str(exc)
    except Unmergeable:
        reason = _UNMERGEABLE
    if fields is FIELDS:
        _REASONS[key] = reason
        if len(_REASONS) > REASON_CACHE_SIZE:
            _REASONS.popitem(last=False)
    return reason


def _root(schema: GraphQLSchema, document: DocumentNode, entity_type: EntityType, fields: Fields) -> RootPlan:
    """The plan of a document: a merged one (no fragments, one field per name), or a query's own
    (to find what would stop it compiling without merging it)."""
    (op,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    query_type = schema.query_type
    assert query_type is not None
    entity_name = entity_type.graphql_name
    entries: list[Leaf | Relation] = []
    for key, nodes in collect_fields(schema, query_type, [op.selection_set], fragments).items():
        name = nodes[0].name.value
        if name == "__typename":
            entries.append(Leaf(key, TYPENAME, arg=query_type.name))
            continue
        if name not in ROOT_FIELDS or ROOT_FIELDS[name] not in (None, entity_type):
            raise Unsupported(f"root field `{name}` is not compiled")
        for node in nodes:
            arguments = node.arguments or ()
            if not (
                len(arguments) == 1
                and arguments[0].name.value == "id"
                and isinstance(arguments[0].value, VariableNode)
                and arguments[0].value.name.value == "id"
            ):
                raise Unsupported(f"root field `{name}` takes an argument other than `id: $id`")
        runtime = schema.get_type(entity_name)
        assert isinstance(runtime, GraphQLObjectType)
        obj = _obj(schema, fields, fragments, runtime, _children(nodes), TABLES[entity_name])
        entries.append(Relation(key, TABLES[entity_name], "id", many=False, obj=obj))
    return RootPlan(TABLES[entity_name], tuple(entries))


def _children(nodes: list[FieldNode]) -> list[SelectionSetNode]:
    return [n.selection_set for n in nodes if n.selection_set is not None]


def _obj(
    schema: GraphQLSchema,
    table: Fields,
    fragments: Fragments,
    runtime: GraphQLObjectType,
    sets: list[SelectionSetNode],
    row_table: str,
) -> Obj:
    """The object of type `runtime` made from a row of `row_table`."""
    type_name = runtime.name
    fields = table.get(type_name)
    if fields is None:
        raise Unsupported(f"type {type_name} is not compiled")
    entries: list[Leaf | MoneyOf | MoneyPart | Relation | Embedded] = []
    for key, nodes in collect_fields(schema, runtime, sets, fragments).items():
        name = nodes[0].name.value
        if any(n.arguments for n in nodes):
            raise Unsupported(f"{type_name}.{name} has arguments")
        if name == "__typename":
            entries.append(Leaf(key, TYPENAME, arg=type_name))
        elif name == "id" and name not in fields:
            entries.append(Leaf(key, GLOBAL_ID, "id", arg=type_name))
        elif name not in fields:
            raise Unsupported(f"{type_name}.{name} has no SQL form")
        else:
            form = fields[name]
            if isinstance(form, Col):
                entries.append(Leaf(key, form.kind, form.column, form.arg))
            elif isinstance(form, Money):
                entries.append(MoneyOf(key, form.amount, form.currency, _money_fields(schema, fragments, nodes)))
            elif isinstance(form, Part):
                entries.append(MoneyPart(key, form.amount, form.currency, form.part))
            else:
                target = schema.get_type(form.type_name)
                assert isinstance(target, GraphQLObjectType)
                if isinstance(form, Same):
                    entries.append(Embedded(key, _obj(schema, table, fragments, target, _children(nodes), row_table)))
                    continue
                target_table = ROW_TABLES[form.type_name]
                sub = _obj(schema, table, fragments, target, _children(nodes), target_table)
                entries.append(Relation(key, target_table, form.column, isinstance(form, Many), sub))
    if len(entries) > MAX_KEYS:
        raise Unsupported(f"{type_name} selects {len(entries)} fields; at most {MAX_KEYS} compile")
    return Obj(row_table, tuple(entries))


def _money_fields(schema: GraphQLSchema, fragments: Fragments, nodes: list[FieldNode]) -> tuple[tuple[str, str], ...]:
    money = schema.get_type("Money")
    assert isinstance(money, GraphQLObjectType)
    out = []
    for key, sub in collect_fields(schema, money, _children(nodes), fragments).items():
        name = sub[0].name.value
        if name not in ("amount", "currencyCode", "formatted", "__typename"):
            raise Unsupported(f"Money.{name} has no SQL form")
        out.append((key, name))
    return tuple(out)
