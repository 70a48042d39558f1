"""Webhook queries: parsed and validated once, when registered; delivery reuses the result.

Pure of I/O. The strawberry schema is passed in, so the delivery side never imports the API.
Besides SPEC §4's rules, a query registered or previewed is held to its owner's cost limits
(app.evaluation.cost), the same as that owner's API requests."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
    print_ast,
    validate,
)

from app.evaluation.cost import Cost, Limits, check, measure
from app.types import EntityType

MAX_DEPTH = 10
MAX_FIELDS = 500
# characters: a pretty-printed 500-field query fits; the cap bounds parsing work, the field and depth
# limits below bound everything after it
MAX_QUERY_LENGTH = 50_000
DEFAULT_QUERY = "query($id: ID!) { node(id: $id) { __typename id } }"
CACHE_SIZE = 1024  # distinct accepted (query, type) pairs kept parsed: stored webhooks share few queries
_ROOT_FIELDS = {
    EntityType.INVOICE: "invoice",
    EntityType.VARIANT: "variant",
    EntityType.REFUND_REQUEST: "refundRequest",
}


@dataclass(frozen=True)
class CompiledQuery:
    """A webhook query that passed every rule: the parsed, validated document to execute as is.
    Hashable, so evaluations can be grouped by query."""

    text: str
    entity_type: EntityType
    # Equal text means an equal document; hashing the AST instead would walk every node (~0.5 ms
    # for a 500-field query) each time the engine groups webhooks by query.
    document: DocumentNode = dataclasses.field(compare=False, hash=False)
    cost: Cost = dataclasses.field(compare=False, hash=False)  # a property of the text: checked per owner


_CACHE: OrderedDict[tuple[Any, str, EntityType], CompiledQuery] = OrderedDict()


@dataclass(frozen=True)
class QueryError:
    """Why a query was refused; the message is shown to the integrator as is."""

    message: str


def compile_query(
    schema: Any, text: str, entity_type: EntityType, *, limits: Limits | None = None, remember: bool = True
) -> CompiledQuery | QueryError:
    """Check a webhook query against every rule of SPEC §4, and against `limits` (its owner's
    cost limits) when given, and return its parsed document. The engine passes no limits: the
    stored queries it runs were checked when registered.

    Accepted queries are kept per (schema, text, entity type) in a bounded LRU, so the engine calls
    this for every stored webhook without parsing or validating a query twice in a process. The
    cost is part of the kept result, so a cached query is still checked against each caller's
    limits. Refusals are not kept (they are answers to API input, and would let junk crowd the
    cache); neither are queries compiled with `remember=False` (one-off previews)."""
    key = (schema, text, entity_type)
    compiled = _CACHE.get(key)
    if compiled is not None:
        _CACHE.move_to_end(key)
    else:
        fresh = _compile(schema, text, entity_type)
        if isinstance(fresh, QueryError):
            return fresh
        compiled = fresh
        if remember:
            _CACHE[key] = compiled
            if len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    problem = check(compiled.cost, limits) if limits is not None else None
    return QueryError(problem) if problem else compiled


def _compile(schema: Any, text: str, entity_type: EntityType) -> CompiledQuery | QueryError:
    if len(text) > MAX_QUERY_LENGTH:
        return QueryError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    try:
        document = parse(text)
    except GraphQLError as exc:
        return QueryError(f"query does not parse: {exc.message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        return QueryError(f"query must contain exactly one operation, found {len(operations)}")
    op = operations[0]
    if op.operation is not OperationType.QUERY:
        return QueryError(f"the operation must be a query, not a {op.operation.value}")
    for var in op.variable_definitions or ():
        is_id = (
            var.variable.name.value == "id"
            and isinstance(var.type, NonNullTypeNode)
            and isinstance(var.type.type, NamedTypeNode)
            and var.type.type.name.value == "ID"
        )
        if not is_id:
            found = f"${var.variable.name.value}: {print_ast(var.type)}"
            return QueryError(f"the only variable allowed is `$id: ID!`, found `{found}`")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    # Size first: it is a cheap bounded walk, while validation (overlapping-fields checks) grows
    # quadratically with the fields of one selection set.
    cost = measure(schema._schema, document, None, {}, max_work=MAX_FIELDS * 4)
    if cost.depth > MAX_DEPTH:
        return QueryError(f"query is nested {cost.depth} levels deep; at most {MAX_DEPTH} are allowed")
    if not cost.complete:  # counting stopped early
        return QueryError(
            f"query expands to more than {MAX_FIELDS * 4} fields and fragments; at most {MAX_FIELDS} fields are allowed"
        )
    if cost.fields > MAX_FIELDS:
        return QueryError(f"query selects {cost.fields} fields after fragment expansion; at most {MAX_FIELDS}")
    errors = validate(schema._schema, document)
    if errors:
        return QueryError("query is not valid against the schema: " + "; ".join(e.message for e in errors[:5]))
    problem = _selects_entity(op, fragments, entity_type)
    if problem:
        return QueryError(problem)
    return CompiledQuery(text=text, entity_type=entity_type, document=document, cost=cost)


def _top_fields(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    out: list[FieldNode] = []
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            out.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            out.extend(_top_fields(sel.selection_set, fragments))
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            out.extend(_top_fields(fragments[sel.name.value].selection_set, fragments))
    return out


def _type_conditions(selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]) -> set[str]:
    found: set[str] = set()
    for sel in selection_set.selections if selection_set else ():
        if isinstance(sel, InlineFragmentNode) and sel.type_condition is not None:
            found.add(sel.type_condition.name.value)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            found.add(fragments[sel.name.value].type_condition.name.value)
    return found


def _selects_entity(
    op: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode], entity_type: EntityType
) -> str | None:
    wanted = entity_type.graphql_name
    root = _ROOT_FIELDS[entity_type]
    selecting = 0
    for field in _top_fields(op.selection_set, fragments):
        name = field.name.value
        if name == "__typename":
            continue
        args = {a.name.value: a.value for a in field.arguments or ()}
        takes_id = isinstance(args.get("id"), VariableNode) and args["id"].name.value == "id"  # type: ignore[attr-defined]
        if name == "node" and takes_id:
            conditions = _type_conditions(field.selection_set, fragments) - {"Node"}
            if conditions and wanted not in conditions:
                return f"query selects {', '.join(sorted(conditions))} but this webhook's type is {wanted}"
            selecting += 1
        elif name == root and takes_id:
            selecting += 1
        else:
            return f"query may only select `node(id: $id)` or `{root}(id: $id)` at the top level, found `{name}`"
    if not selecting:
        return f"query must select the entity: `node(id: $id) {{ ... on {wanted} }}` or `{root}(id: $id)`"
    return None
