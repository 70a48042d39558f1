"""Evaluating a group's webhook queries through their compiled SQL (app.evaluation.sql, rendered
by app.store.payload_sql), and the rest through graphql-core (app.evaluation.execute).

One group — an owner's queries of one entity type — costs one statement per batch: PostgreSQL
builds every entity's merged `data`, and each query's payload is cut out of it. An entity whose
data holds a value graphql-core reports as an error (a `…Cents` amount beyond GraphQL's 32-bit
Int) is evaluated by graphql-core instead, as `evaluate_many` evaluates it with compiled queries
off: its payloads carry the `errors` (message, locations, path) only graphql-core writes. The
outcomes are those `evaluate_many` returns, so the producer encodes, size-checks, hashes and
enqueues them the same way whichever path made them.

Budgets: the statement runs under the group's time budget (`evaluation_timeout_ms`; asyncpg
cancels it on the server when it runs over), and cutting the payloads out of its result stops
when the same budget, counted from the statement's start, is spent. Neither is a breach yet:
the entities left are evaluated by graphql-core, whose runs attribute a breach to the queries
that spent it (app.evaluation.execute). A compiled group therefore costs at most one budget
more than graphql-core alone would. Payload size is checked when the producer encodes each
payload, as for graphql-core's."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from app.evaluation.compile import CompiledQuery
from app.evaluation.execute import Budgets, Outcome, evaluate_many
from app.evaluation.sql import FIELDS, CompiledGroup, Fields, compile_group, fallback_reason
from app.store import payload_sql

log = logging.getLogger(__name__)

REASONS_LOGGED = 1024  # distinct query texts whose fallback reason this process has logged
_logged: set[str] = set()


def explain_fallback(schema: Any, query: CompiledQuery, fields: Fields = FIELDS) -> str | None:
    """Why `query` runs through graphql-core, logged at debug level once per query text (None
    when it compiles)."""
    reason = fallback_reason(schema, query, fields)
    if reason is not None and query.text not in _logged:
        if len(_logged) >= REASONS_LOGGED:
            _logged.clear()
        _logged.add(query.text)
        log.debug("webhook query evaluated by graphql-core, not compiled: %s; query: %s", reason, query.text)
    return reason


async def evaluate_group(
    pool: asyncpg.Pool,
    schema: Any,
    context: Any,
    queries: Sequence[CompiledQuery],
    entity_ids: Sequence[int],
    global_ids: Sequence[str],
    seller_id: int | None,
    budgets: Budgets,
    fields: Fields = FIELDS,
) -> dict[CompiledQuery, list[Outcome]]:
    """Outcomes per query for the entities, in order, as `evaluate_many` gives them: the queries
    that compile through one statement, the others (and all, if the statement runs over its
    budget) through graphql-core with `context`. `fields`: the compiler's field table."""
    distinct = list(dict.fromkeys(queries))
    compilable = [q for q in distinct if explain_fallback(schema, q, fields) is None]
    rest = [q for q in distinct if q not in set(compilable)] if len(compilable) < len(distinct) else []
    out: dict[CompiledQuery, list[Outcome]] = {}
    if compilable:
        group = compile_group(schema, compilable, fields)
        if isinstance(group, str):  # each compiles alone, so never expected
            log.warning("compiled webhook queries did not compile together: %s", group)
            rest = distinct
        else:
            redo = await _compiled(pool, group, entity_ids, seller_id, budgets, out)
            if redo:
                again = await evaluate_many(schema, context, group.queries, [global_ids[i] for i in redo], budgets)
                for q in group.queries:
                    for i, outcome in zip(redo, again[q], strict=True):
                        out[q][i] = outcome
    if rest:
        out.update(await evaluate_many(schema, context, rest, global_ids, budgets))
    return out


async def _compiled(
    pool: asyncpg.Pool,
    group: CompiledGroup,
    entity_ids: Sequence[int],
    seller_id: int | None,
    budgets: Budgets,
    out: dict[CompiledQuery, list[Outcome]],
) -> list[int]:
    """Run the group's statement and put its payloads in `out`, entity by entity, within the
    time budget: the statement's, then its projection's (synchronous, so its wall time is this
    group's own CPU). Returns the indexes of the entities it did not do, in order: those past the
    budget, and those whose data holds a value graphql-core reports as an error (their payload
    carries `errors`, which graphql-core writes); the caller evaluates them by graphql-core."""
    for q in group.queries:  # every slot is filled here, or by the caller for the entities returned
        out[q] = [None] * len(entity_ids)  # type: ignore[list-item]
    try:
        async with pool.acquire() as conn:
            started_s = time.perf_counter()  # not counting the wait for a connection
            texts = await payload_sql.fetch_data(conn, group.plan, list(entity_ids), seller_id, budgets.time_s)
    except TimeoutError:
        log.info("a compiled group ran over its %s ms budget; evaluating it by graphql-core", budgets.time_ms)
        return list(range(len(entity_ids)))
    deadline_s = started_s + budgets.time_s
    redo: list[int] = []
    # The payloads are acyclic dicts and lists, all kept: the cyclic collector, which would run
    # every 700 allocations over a heap that holds every parsed query, finds nothing to free.
    # Paused for this synchronous loop (measured, CPU of a group, medians of 5: 1,000 webhooks ×
    # 20 invoices 0.86 s → 0.21 s; 10 × 100: 10 → 6 ms). It runs again as soon as the loop ends.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for done, text in enumerate(texts):
            if time.perf_counter() > deadline_s:
                log.info("a compiled group's projection ran over its %s ms budget", budgets.time_ms)
                return redo + list(range(done, len(texts)))
            if text is None:
                redo.append(done)
                continue
            data = orjson.loads(text)
            for q in group.queries:
                out[q][done] = group.project(q, data)
    finally:
        if collecting:
            gc.enable()
    return redo
