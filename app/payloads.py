"""Runs webhook queries for a batch of entities. The schema and context come from the caller:
the delivery side never imports the API package."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from graphql import DocumentNode, ExecutionResult, execute

from app.merge import merge_queries
from app.queries import CompiledQuery

# graphql-core 3.3 renamed the hook strawberry plugs its execution context into.
_EXECUTOR_KW = (
    "executor_class" if "executor_class" in inspect.signature(execute).parameters else "execution_context_class"
)


def _as_payload(result: ExecutionResult) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return payload


async def _execute(schema: Any, context: Any, document: DocumentNode, global_id: str) -> ExecutionResult:
    # Executing the pre-parsed, pre-validated document directly: strawberry's schema.execute
    # would parse and validate the text again on every delivery.
    result = execute(
        schema._schema,
        document,
        variable_values={"id": global_id},
        context_value=context,
        **{_EXECUTOR_KW: schema.execution_context_class},
    )
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_query(schema: Any, context: Any, compiled: CompiledQuery, global_id: str) -> dict[str, Any]:
    """The payload for one entity: `{"data": …}` plus `"errors"` when resolvers failed."""
    return _as_payload(await _execute(schema, context, compiled.document, global_id))


async def evaluate(
    schema: Any, context: Any, compiled: CompiledQuery, global_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Payloads for many entities at once, in order. All executions share `context`, so its
    DataLoaders turn the batch into a handful of SQL statements."""
    return list(await asyncio.gather(*(run_query(schema, context, compiled, g) for g in global_ids)))


async def evaluate_many(
    schema: Any, context: Any, queries: Sequence[CompiledQuery], global_ids: Sequence[str]
) -> dict[CompiledQuery, list[dict[str, Any]]]:
    """Payloads of several queries (one visibility: one `context`) for the same entities.

    The queries are merged (app.merge) and executed once per entity; each query's payload is cut
    out of that result. An entity whose merged execution reports errors is evaluated query by
    query, so its payloads carry exactly the errors (and nulls) their own queries produce."""
    distinct = list(dict.fromkeys(queries))
    merged = merge_queries(schema._schema, distinct) if len(distinct) > 1 else None
    if merged is None:
        return {q: await evaluate(schema, context, q, global_ids) for q in distinct}
    results = await asyncio.gather(*(_execute(schema, context, merged.document, g) for g in global_ids))
    out: dict[CompiledQuery, list[dict[str, Any]]] = {q: [] for q in distinct}
    failed = [i for i, r in enumerate(results) if r.errors or r.data is None]
    redone: dict[int, list[dict[str, Any]]] = {}
    if failed:
        again = await asyncio.gather(
            *(asyncio.gather(*(run_query(schema, context, q, global_ids[i]) for q in distinct)) for i in failed)
        )
        redone = dict(zip(failed, again, strict=True))
    for i, result in enumerate(results):
        if i in redone:
            for q, payload in zip(distinct, redone[i], strict=True):
                out[q].append(payload)
            continue
        data = result.data
        assert data is not None
        for q in distinct:
            out[q].append({"data": merged.project(q, data)})
    return out
