"""Runs webhook queries for a batch of entities. The schema and context come from the caller:
the delivery side never imports the API package."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from graphql import ExecutionResult, execute

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


async def run_query(schema: Any, context: Any, compiled: CompiledQuery, global_id: str) -> dict[str, Any]:
    """The payload for one entity: `{"data": …}` plus `"errors"` when resolvers failed."""
    # Executing the pre-parsed, pre-validated document directly: strawberry's schema.execute
    # would parse and validate the text again on every delivery.
    result = execute(
        schema._schema,
        compiled.document,
        variable_values={"id": global_id},
        context_value=context,
        **{_EXECUTOR_KW: schema.execution_context_class},
    )
    if inspect.isawaitable(result):
        result = await result
    return _as_payload(result)


async def evaluate(
    schema: Any, context: Any, compiled: CompiledQuery, global_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Payloads for many entities at once, in order. All executions share `context`, so its
    DataLoaders turn the batch into a handful of SQL statements."""
    return list(await asyncio.gather(*(run_query(schema, context, compiled, g) for g in global_ids)))
