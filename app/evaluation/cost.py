"""Static cost of a GraphQL document, measured before it runs: pure, no I/O, the schema passed in.

One walk over the operation that would run, with fragments expanded, yields `Cost`:

- `depth`: levels of nested fields (`{ invoice { seller { name } } }` is 3); fragments add none.
- `aliases`: aliased fields, counted at each place a fragment is spread.
- `fields`: fields selected after fragment expansion.
- `nodes`: the estimated objects and values the response returns, the figure the cost limit
  (`seller_max_cost`, `operator_max_cost`) applies to:

      nodes(selection set, parents) = sum over its fields f of
          parents × fan_out(f)  +  nodes(f's selection set, parents × fan_out(f))

  with `parents` = 1 at the root. `fan_out(f)` is 1 for a field that is not a list, else:

  | list | fan-out |
  | --- | --- |
  | `edges`, `nodes` of a connection (`invoices`, `webhook.events` …) | its `first`; absent: 20; at most 100 |
  | a list field with an `ids` argument (`nodes(ids:)`) | the number of ids, at most 100 |
  | every plain list (`LIST_BOUNDS`) | 20 |

  The plain lists: `Seller.products`, `Product.variants`, `Order.invoices`, `Invoice.lineItems`,
  `shipments`, `amendments` and `refundRequests`, `Shipment.items`, `RefundRequest.lineItems`,
  `Query.webhooks`, `Webhook.headers` and `subscribedEvents`, `WebhookEvent.attempts`, and the
  `errors` of mutation payloads.

  One figure for every plain list keeps the rule easy to state and to plan for; the lists have no
  `first` to say better. It is an estimate, not a cap: a seller's products may be thousands, and
  the request deadline and response size bound what the estimate misses.

  A type's fields behind inline fragments all count (an upper bound: an object matches one).
  Introspection (`__schema`, `__type`) reads the in-memory schema, not the database: such a field
  counts a flat `INTROSPECTION_COST`, its selection neither nodes nor depth (GraphiQL's query
  nests type references 9 deep), and graphql-core's MaxIntrospectionDepthRule bounds it instead.

So `invoice(id) { seller { products { seller { products { legacyId } } } } }` costs
1 + 1 + 20 + 20 + 400 + 400 = 842, and each further `seller { products }` multiplies by 20.

The walk counts its work (every field, fragment spread and inline fragment after expansion) and
stops once that exceeds `max_work` (the cost limit, for the API): a fragment spread twice in a
fragment spread twice … expands exponentially, and is refused after a bounded walk. A spread of a
fragment already being expanded (a cycle) or of an unknown one adds nothing here; graphql-core's
validation, which runs after this check, reports it.

`returned` counts the same figure in an answer: a document's actual cost, which the API's cost
budget (app.api.cost_limit) charges in the end, instead of the estimate it took up front.

Hand-written where libraries fall short: strawberry's QueryDepthLimiter and MaxAliasesLimiter take
one limit per schema (ours depend on the key), re-expand every fragment at each spread with no
early stop, and estimate no fan-out; graphql-core has no cost analysis. graphql-core does the
argument and variable coercion (`first: $n`, defaults) here, as it will when executing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language.parser import MAX_NESTING_DEPTH

from app.config import Settings

DEFAULT_PAGE = 20  # app.api.pagination: a connection's page without `first`
MAX_PAGE = 100  # app.api.pagination: the largest `first`
MAX_IDS = 100  # app.api.query.MAX_NODES: the most ids `nodes(ids:)` takes
DEFAULT_LIST_BOUND = 20  # items counted for a plain list not in LIST_BOUNDS
# Plain lists (an entity's own relations, reverse relations, webhook fields): items counted per
# list. A test keeps this table complete for the schema; change a figure here, with a reason.
LIST_BOUNDS: dict[str, int] = {
    "Seller.products": DEFAULT_LIST_BOUND,
    "Product.variants": DEFAULT_LIST_BOUND,
    "Order.invoices": DEFAULT_LIST_BOUND,
    "Invoice.lineItems": DEFAULT_LIST_BOUND,
    "Invoice.shipments": DEFAULT_LIST_BOUND,
    "Invoice.amendments": DEFAULT_LIST_BOUND,
    "Invoice.refundRequests": DEFAULT_LIST_BOUND,
    "Shipment.items": DEFAULT_LIST_BOUND,
    "RefundRequest.lineItems": DEFAULT_LIST_BOUND,
    "Shipment.shippedItems": DEFAULT_LIST_BOUND,  # Shipment.items under Marketplacer's name
    # Marketplacer-shaped fields (issue #15), counted nearer what they hold than 20, so that the
    # queries integrators bring fit a seller's limit: an invoice has at most the 9 flags of
    # InvoiceStatusFlag; an object's external ids are one per other system (a handful); a
    # variant has one option value per option type (Size, Colour …)
    "Invoice.statusFlags": 9,
    "Seller.externalIds": 5,
    "Order.externalIds": 5,
    "Invoice.externalIds": 5,
    "OptionValueConnection.edges": 5,
    "OptionValueConnection.nodes": 5,
    "Query.webhooks": DEFAULT_LIST_BOUND,
    "Webhook.headers": DEFAULT_LIST_BOUND,  # at most 20 headers (app.transport.netguard)
    "Webhook.subscribedEvents": DEFAULT_LIST_BOUND,  # in fact at most 3
    "WebhookEvent.attempts": DEFAULT_LIST_BOUND,  # up to maxAttempts (≤ 50)
    "WebhookDelivery.headers": DEFAULT_LIST_BOUND,  # a webhook's headers and the 7 of the engine
    **{
        f"{payload}.errors": DEFAULT_LIST_BOUND  # a mutation's field errors
        for payload in (
            "WebhookPayload",
            "WebhookSecretPayload",
            "WebhookDeletePayload",
            "WebhookTestPayload",
            "WebhookPreviewPayload",
            "WebhookEventPayload",
            "WebhookReplayPayload",
            "WebhookListenPayload",
            "WebhookListenStopPayload",
            "WebhookListenReportPayload",
        )
    },
}
INTROSPECTION_COST = 1_000  # per `__schema`/`__type` field: GraphiQL's full introspection fits a seller's limit
# Reported `nodes` saturate here: a 53-bit integer, so JSON clients read it exactly.
NODES_CEILING = 2**53 - 1
# graphql-core parses at most this many tokens per document (`MaxTokensLimiter`): parsing and
# validating run before any cost is known and grow with the document, on the API's event loop
# (about 7 ms per 1,000 tokens on a 2-core Xeon VM). GraphiQL's introspection query is ~200
# tokens, a 500-field webhook query ~1,500, 100 aliases of a 10-field selection ~3,000.
MAX_TOKENS = 5_000
_INTROSPECTION = frozenset({"__schema", "__type"})


@dataclass(frozen=True)
class Cost:
    """What one document would cost (see the module docstring). `complete` is False when counting
    stopped early (more work than allowed, or nesting beyond graphql-core's parser limit): the
    figures are then lower bounds."""

    depth: int
    aliases: int
    fields: int
    nodes: int
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """The most one key (or one webhook's owner) may ask for in one document."""

    max_depth: int
    max_aliases: int
    max_cost: int  # estimated nodes; also the most fields and fragments a document expands to
    kind: str  # "seller" or "operator": named in refusals

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "maxDepth": self.max_depth, "maxAliases": self.max_aliases, "maxCost": self.max_cost}


def limits_for(settings: Settings, *, operator: bool) -> Limits:
    """The limits of an operator key (or an operator's webhook), else a seller's."""
    s = settings
    if operator:
        return Limits(s.operator_max_depth, s.operator_max_aliases, s.operator_max_cost, "operator")
    return Limits(s.seller_max_depth, s.seller_max_aliases, s.seller_max_cost, "seller")


def check(cost: Cost, limits: Limits) -> str | None:
    """None when the cost is within the limits, else one message naming every limit exceeded and
    what was measured."""
    at_least = "" if cost.complete else "at least "
    problems = []
    if cost.nodes > limits.max_cost:
        problems.append(
            f"query cost {at_least}{cost.nodes:,} exceeds the {limits.kind} limit of {limits.max_cost:,} "
            f"(estimated objects and values returned; a list counts {DEFAULT_LIST_BOUND} items unless "
            "`first` or `ids` says otherwise)"
        )
    if cost.depth > limits.max_depth:
        problems.append(
            f"query depth {at_least}{cost.depth} exceeds the {limits.kind} limit of {limits.max_depth} "
            "(levels of nested fields)"
        )
    if cost.aliases > limits.max_aliases:
        problems.append(
            f"query uses {at_least}{cost.aliases:,} aliases; the {limits.kind} limit is {limits.max_aliases}"
        )
    if not problems and not cost.complete:
        problems.append(
            f"query expands to more than {limits.max_cost:,} fields and fragments after fragment expansion; "
            f"the {limits.kind} limit is {limits.max_cost:,}"
        )
    return "; ".join(problems) or None


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    max_work: int,
) -> Cost:
    """The cost of the operation that would run: the one named, else the only one. A document
    whose operation cannot be told (several, none named) is measured whole, as execution refuses
    it anyway. The document need not be valid: unknown fields count as leaves."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        chosen = [op for op in operations if op.name is not None and op.name.value == operation_name]
    else:
        chosen = operations if len(operations) != 1 else operations[:1]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walk = _Walk(schema, fragments, variables or {}, max_work)
    for op in chosen:
        walk.operation, walk.coerced = op, None
        walk.selection_set(op.selection_set, schema.get_root_type(op.operation), 1, 0, None, 1)
    return Cost(
        depth=walk.depth,
        aliases=walk.aliases,
        fields=walk.fields,
        nodes=min(walk.nodes, NODES_CEILING),
        complete=walk.complete and walk.nodes <= NODES_CEILING,
    )


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        max_work: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.max_work = max_work
        self.operation: OperationDefinitionNode | None = None
        self.coerced: VariableValues | None = None  # the operation's variables, coerced on first use
        self.expanding: set[str] = set()  # fragments on the current path: a spread of one is a cycle
        self.depth = self.aliases = self.fields = self.nodes = self.work = 0
        self.complete = True

    def selection_set(
        self, selection_set: SelectionSetNode, parent: Any, parents: int, depth: int, page: int | None, nesting: int
    ) -> None:
        """Count one selection set of `parent` (a GraphQL type, or None when unknown), selected
        on `parents` objects; `page` is the `first` of the connection field that returned them."""
        if nesting > MAX_NESTING_DEPTH:  # graphql-core refuses such documents; stop before the stack does
            self.complete = False
            return
        for selection in selection_set.selections:
            self.work += 1
            if self.work > self.max_work:
                self.complete = False
                return
            if isinstance(selection, FieldNode):
                self.field(selection, parent, parents, depth, page, nesting)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                self.selection_set(selection.selection_set, inner, parents, depth, page, nesting + 1)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in self.expanding:
                    continue
                self.expanding.add(name)
                inner = self.schema.get_type(fragment.type_condition.name.value)
                self.selection_set(fragment.selection_set, inner, parents, depth, page, nesting + 1)
                self.expanding.discard(name)

    def field(self, node: FieldNode, parent: Any, parents: int, depth: int, page: int | None, nesting: int) -> None:
        self.fields += 1
        self.aliases += node.alias is not None
        depth += 1
        self.depth = max(self.depth, depth)
        name = node.name.value
        if name in _INTROSPECTION:
            self.nodes += parents * INTROSPECTION_COST
            return
        definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else None
        returned, child_page, fan_out = None, None, 1
        if definition is not None:
            returned = get_named_type(definition.type)
            if "first" in definition.args:
                child_page = self._first(node, definition)
            if _is_list(definition.type):
                fan_out = self._fan_out(parent.name, node, definition, page)
        count = parents * fan_out
        self.nodes += count
        if node.selection_set is not None:
            self.selection_set(node.selection_set, returned, count, depth, child_page, nesting + 1)

    def _fan_out(self, parent_name: str, node: FieldNode, definition: GraphQLField, page: int | None) -> int:
        if page is not None:  # `edges` or `nodes` of a connection
            return page
        if "ids" in definition.args:
            ids = (self._arguments(node, definition) or {}).get("ids")
            return min(len(ids), MAX_IDS) if isinstance(ids, list) else MAX_IDS
        return LIST_BOUNDS.get(f"{parent_name}.{node.name.value}", DEFAULT_LIST_BOUND)

    def _first(self, node: FieldNode, definition: GraphQLField) -> int:
        arguments = self._arguments(node, definition)
        if arguments is None:
            return MAX_PAGE  # arguments that do not coerce: execution refuses them; count the most
        first = arguments.get("first")
        return DEFAULT_PAGE if first is None else min(max(first, 0), MAX_PAGE)

    def _arguments(self, node: FieldNode, definition: GraphQLField) -> dict[str, Any] | None:
        """The field's arguments as execution will see them (variables and defaults applied), or
        None when they do not coerce (execution refuses those)."""
        if self.coerced is None and self.operation is not None:
            coerced = get_variable_values(
                self.schema, self.operation.variable_definitions or (), dict(self.variables), max_errors=1
            )
            # Variables that do not coerce stop the request before execution; count them as absent.
            self.coerced = coerced if isinstance(coerced, VariableValues) else VariableValues({}, {})
        try:
            return get_argument_values(definition, node, self.coerced)
        except GraphQLError:
            return None


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def returned(data: object, *, at_most: int) -> int:
    """The objects and values a response's `data` returned, counted as `nodes` estimates them: one
    per field of each object, one per item for a list field; at most `at_most`, where the walk
    stops, so its work is bounded by the estimate it is compared with. A document's actual cost.
    (The schema has no lists of lists; what a JSON scalar holds counts as if it were fields.)"""
    count = 0
    pending = [data] if isinstance(data, dict) else []
    while pending and count < at_most:
        for value in pending.pop().values():
            if isinstance(value, list):
                count += len(value)
                pending.extend(item for item in value if isinstance(item, dict))
            else:
                count += 1
                if isinstance(value, dict):
                    pending.append(value)
    return min(count, at_most)
