"""Runs webhook queries for a batch of entities, within their budgets. The schema and context come
from the caller: the delivery side never imports the API package.

Budgets (issue #11). One owner's queries of one entity type (a group: they share a visibility
and run merged) evaluate a batch in runs of entities, one run after another. The entities of a
run execute at once, so their DataLoaders batch, and the run has the time budget
(`evaluation_timeout_ms`): each entity has it from the start. Time is charged as `app.evaluation.budgets`
explains: checked at field resolutions, so CPU-bound work stops too, and not counting other
owners' evaluations that share the event loop. A run holds as many entities as the same
queries evaluated in about a quarter of the budget last time (`RunSizes`), so a legitimate
group with a large backlog does not breach by evaluating too many entities at once.

A merged run that breaches runs its queries one by one, sharing one more budget, so the breach
is recorded only for the queries that spent it; a query that breached is not evaluated for the
rest of the batch (each further run would cost another budget). One breaching group therefore
delays its batch by twice the budget at most, plus the time its executions take to stop, and
other groups' payloads are unaffected.
A payload's size is checked when it is encoded (`encode_within`)."""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from graphql import DocumentNode, ExecutionResult, MiddlewareManager, execute

from app.evaluation.budgets import Budget, BudgetExceeded, Meter, Share
from app.evaluation.compile import CompiledQuery
from app.evaluation.merge import merge_queries
from app.policy.envelope import PayloadJSON, encode_payload, payload_hash

# graphql-core 3.3 renamed the hook strawberry plugs its execution context into.
_EXECUTOR_KW = (
    "executor_class" if "executor_class" in inspect.signature(execute).parameters else "execution_context_class"
)
# Entities per run. Unknown queries start at FIRST_RUN; known ones get as many as took about
# RUN_SHARE of the budget last time, up to MAX_RUN. Measured on a busy 2-core machine: 1.6 ms of
# CPU per invoice for a typical query, 7.7 ms for 170 queries merged (the bench with 1,000
# webhooks) — a run of 100 of those is 0.8 s, over the 500 ms default budget, and of 16 is 0.12 s.
FIRST_RUN = 25
MAX_RUN = 100
RUN_SHARE = 0.25
RUN_SIZES_KEPT = 256  # query sets whose cost is remembered (one per group in use)


@dataclass(frozen=True)
class Breach:
    """Why an entity has no payload for a query: it breached a budget. `reason` is the metric
    label (`time` or `size`); `error` is what the event log shows; `evaluated` is False for an
    entity left out because the query breached on others."""

    reason: str
    error: str
    evaluated: bool = True


@dataclass(frozen=True)
class Encoded:
    """A payload within its size budget, as stored and sent."""

    text: PayloadJSON
    hash: bytes


Outcome = dict[str, Any] | Breach  # an entity's payload for one query, or why there is none


class RunSizes:
    """How many entities of a group to evaluate in one run, from what the same queries cost per
    entity last time (their run's charged time). A run that breached cost at least the budget,
    so the next one is at most a quarter as large: a query that breaches ends up run one
    entity at a time."""

    def __init__(self) -> None:
        self._cost_s: OrderedDict[tuple[str, ...], float] = OrderedDict()  # per entity

    def size(self, queries: tuple[str, ...], budget_s: float) -> int:
        cost_s = self._cost_s.get(queries)
        if cost_s is None:
            return FIRST_RUN
        self._cost_s.move_to_end(queries)
        return max(1, min(MAX_RUN, int(budget_s * RUN_SHARE / max(cost_s, 1e-6))))

    def observe(self, queries: tuple[str, ...], entities: int, charged_s: float) -> None:
        self._cost_s[queries] = charged_s / entities
        self._cost_s.move_to_end(queries)
        if len(self._cost_s) > RUN_SIZES_KEPT:
            self._cost_s.popitem(last=False)


@dataclass(frozen=True)
class Budgets:
    """The runtime budgets of webhook evaluations (from Settings), the engine's meter, and the
    run sizes it learned."""

    meter: Meter
    time_ms: int
    payload_bytes: int
    run_sizes: RunSizes = field(default_factory=RunSizes)

    @property
    def time_s(self) -> float:
        return self.time_ms / 1000

    def time_breach(self) -> Breach:
        return Breach("time", f"evaluation exceeded its {self.time_ms:,} ms budget")

    def not_evaluated(self) -> Breach:
        return Breach(
            "time",
            f"not evaluated: the query exceeded its {self.time_ms:,} ms budget on other entities of this batch",
            evaluated=False,
        )


def encode_within(payload: dict[str, Any], max_bytes: int) -> Encoded | Breach:
    """The payload's JSON, or a size breach when it is longer than `max_bytes` (UTF-8 bytes)."""
    text = encode_payload(payload)
    size = len(text.encode())
    if size > max_bytes:
        return Breach("size", f"payload is {size:,} bytes; the limit is {max_bytes:,}")
    return Encoded(text, payload_hash(text))


def _as_payload(result: ExecutionResult) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return payload


async def _execute(
    schema: Any, context: Any, document: DocumentNode, global_id: str, budget: MiddlewareManager | None = None
) -> ExecutionResult:
    # Executing the pre-parsed, pre-validated document directly: strawberry's schema.execute
    # would parse and validate the text again on every delivery. `budget`: a run's Budget as
    # middleware, one manager for all its executions (it caches the wrapped resolvers).
    result = execute(
        schema._schema,
        document,
        variable_values={"id": global_id},
        context_value=context,
        middleware=budget,
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
    """Payloads for many entities at once, in order, without budgets (the API's preview and
    replay run under the request's own deadline). All executions share `context`, so its
    DataLoaders turn the batch into a handful of SQL statements."""
    return list(await asyncio.gather(*(run_query(schema, context, compiled, g) for g in global_ids)))


async def evaluate_many(
    schema: Any, context: Any, queries: Sequence[CompiledQuery], global_ids: Sequence[str], budgets: Budgets
) -> dict[CompiledQuery, list[Outcome]]:
    """Outcomes of several queries (one visibility: one `context`) for the same entities, in
    order: a payload, or a time `Breach`.

    The queries are merged (app.evaluation.merge) and executed once per entity; each query's payload is cut
    out of that result. An entity whose merged execution reports errors, or breaches, is
    evaluated query by query, so its payloads carry exactly the errors (and nulls) their own
    queries produce, and a breach is the breaching query's alone."""
    distinct = list(dict.fromkeys(queries))
    out: dict[CompiledQuery, list[Outcome]] = {q: [] for q in distinct}
    breached: set[CompiledQuery] = set()
    done = 0
    while done < len(global_ids):
        live = [q for q in distinct if q not in breached]
        if not live:
            for q in distinct:
                out[q].extend(budgets.not_evaluated() for _ in global_ids[done:])
            break
        key = tuple(sorted(q.text for q in live))
        chunk = global_ids[done : done + budgets.run_sizes.size(key, budgets.time_s)]
        done += len(chunk)
        for q in distinct:
            if q in breached:
                out[q].extend(budgets.not_evaluated() for _ in chunk)
        outcomes, charged_s = await _evaluate_run(schema, context, live, chunk, budgets)
        budgets.run_sizes.observe(key, len(chunk), charged_s)
        for q, query_outcomes in outcomes.items():
            out[q].extend(query_outcomes)
            if any(isinstance(o, Breach) for o in query_outcomes):
                breached.add(q)
    return out


async def _evaluate_run(
    schema: Any, context: Any, queries: list[CompiledQuery], global_ids: Sequence[str], budgets: Budgets
) -> tuple[dict[CompiledQuery, list[Outcome]], float]:
    """The run's outcomes per query, and the time it was charged (both phases)."""
    out: dict[CompiledQuery, list[Outcome | None]] = {q: [None] * len(global_ids) for q in queries}
    charged_s = 0.0
    merged = merge_queries(schema._schema, queries) if len(queries) > 1 else None
    redo = list(range(len(global_ids)))
    if merged is not None:
        budget = budgets.meter.budget(budgets.time_s)
        middleware = MiddlewareManager(budget)
        results = await _within(
            budget, [partial(_execute, schema, context, merged.document, g, middleware) for g in global_ids]
        )
        charged_s += budget.charged_s()
        redo = []
        for i, result in enumerate(results):
            if result is None or result.errors or result.data is None:
                redo.append(i)
                continue
            for q in queries:
                out[q][i] = {"data": merged.project(q, result.data)}
    if redo:
        # Query by query: each has its own clock; together they may spend one budget (`Share`).
        share = Share(budgets.time_s, len(queries)) if len(queries) > 1 else None
        budget_of = {q: budgets.meter.budget(budgets.time_s, share) for q in queries}
        middleware_of = {q: MiddlewareManager(b) for q, b in budget_of.items()}
        runs = await asyncio.gather(
            *(
                _within(
                    budget_of[q],
                    [partial(_execute, schema, context, q.document, global_ids[i], middleware_of[q]) for i in redo],
                )
                for q in queries
            )
        )
        charged_s += max(b.charged_s() for b in budget_of.values())
        for q, results in zip(queries, runs, strict=True):
            for i, result in zip(redo, results, strict=True):
                out[q][i] = budgets.time_breach() if result is None else _as_payload(result)
    return {q: [o for o in outcomes if o is not None] for q, outcomes in out.items()}, charged_s


_abandoned: set[asyncio.Task[Any]] = set()


def _settled(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: BudgetExceeded, the expected end of an abandoned execution


async def _within(
    budget: Budget, executions: list[Callable[[], Coroutine[Any, Any, ExecutionResult]]]
) -> list[ExecutionResult | None]:
    """Run the executions at once; each one's result, or None where the budget ran out first.

    Resolutions stop a spent run by themselves; waiting here stops waiting for a run that is
    waiting on I/O (a slow loader, a resolver that awaits) when its budget is spent. Such an
    execution is left to end on its own — at its next resolution, once what it awaits is done
    — rather than cancelled: cancelling it would cancel DataLoader futures that executions of
    other groups, sharing the loaders, may be waiting on."""
    tasks = [asyncio.ensure_future(run()) for run in executions]
    pending: set[asyncio.Task[ExecutionResult]] = set(tasks)
    try:
        while pending:
            remaining_s = budget.remaining_s()
            if remaining_s <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=remaining_s)
    except asyncio.CancelledError:  # the engine is stopping: nobody waits for these any more
        for task in pending:
            task.cancel()
        raise
    for task in pending:
        _abandoned.add(task)
        task.add_done_callback(_settled)
    results: list[ExecutionResult | None] = []
    for task in tasks:
        if not task.done():
            results.append(None)
            continue
        error = task.exception()
        if isinstance(error, BudgetExceeded):
            results.append(None)
        elif error is not None:
            raise error
        else:
            results.append(task.result())
    return results


def cancel_abandoned() -> None:
    """Cancel executions left running after their budget ran out (the engine is stopping)."""
    for task in list(_abandoned):
        task.cancel()
