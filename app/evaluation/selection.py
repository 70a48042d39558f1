"""The field paths a webhook query selects, as its payload carries them: response keys (aliases
included) from the root field down, fragments expanded. A delivery filter may read only these
(app.policy.filters.unknown_paths). Pure of I/O."""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from app.evaluation.compile import CompiledQuery
from app.policy.filters import Condition, FilterError, entity_root, parse, unknown_paths


def selection_paths(compiled: CompiledQuery) -> frozenset[tuple[str, ...]]:
    """Every path the query's payload may hold under `data`: `("node",)`, `("node", "status")`,
    `("node", "total", "amount")` …; each prefix of a path is a path too."""
    document = compiled.document
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    [op] = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    found: set[tuple[str, ...]] = set()
    _walk(op.selection_set, (), fragments, found, frozenset())
    return frozenset(found)


def _walk(
    selection_set: SelectionSetNode | None,
    prefix: tuple[str, ...],
    fragments: dict[str, FragmentDefinitionNode],
    found: set[tuple[str, ...]],
    expanding: frozenset[str],
) -> None:
    for sel in selection_set.selections if selection_set else ():
        if isinstance(sel, FieldNode):
            path = (*prefix, (sel.alias or sel.name).value)
            found.add(path)
            _walk(sel.selection_set, path, fragments, found, expanding)
        elif isinstance(sel, InlineFragmentNode):
            _walk(sel.selection_set, prefix, fragments, found, expanding)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments and sel.name.value not in expanding:
            # validated queries have no fragment cycles; `expanding` keeps this walk finite regardless
            name = sel.name.value
            _walk(fragments[name].selection_set, prefix, fragments, found, expanding | {name})


def compile_filter(text: str, compiled: CompiledQuery) -> Condition | str:
    """The filter `text` parsed and checked against the paths `compiled` selects, or why not (a
    message naming the first unknown path, or the parser's)."""
    try:
        condition = parse(text)
    except FilterError as exc:
        return str(exc)
    root = entity_root(compiled.entity_type.graphql_name)
    unknown = unknown_paths(condition, selection_paths(compiled), root)
    if unknown:
        shown = ", ".join(f"`{p}`" for p in unknown[:5])
        return (
            f"filter reads {shown}, which the query does not select; a path starts at `{root}` (or the query's"
            " root field) and follows the selection's field names or aliases"
        )
    return condition
