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
when the same budget — the statement's time and the projection's own slices — is spent (the
projection yields to the engine's other work every SLICE_S; those turns are not counted). For a
group of one query that is the query's time breach, for the entities left. A group of several
is not yet a breach of any one of them: each query runs its own statement for the entities left,
under the same budget, and the queries that run over again are the ones in breach — the others'
payloads are made. A compiled group therefore costs at most one budget more than its queries alone would,
all of it in PostgreSQL or in short projections: graphql-core, which completes a list's objects
in one synchronous stretch, is not asked to redo a query that ran over (it kept the engine's
loop 0.3-1.2 s per run, and every other owner's sends and evaluations waiting: py-spy on the
bench's noisy-neighbour scenario, another owner's delivery p99 1.8-2.0 s under attack). Payload
size is checked when the producer encodes each payload, as for graphql-core's."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from app.evaluation.compile import CompiledQuery
from app.evaluation.execute import Budgets, Outcome, evaluate_many
from app.evaluation.sql import FIELDS, CompiledGroup, Fields, compile_group, fallback_reason
from app.store import payload_sql

log = logging.getLogger(__name__)

# The projection gives the event loop a turn after each entity once this much of it has run:
# a costly group's payloads (a legacy query's 700 KB each) otherwise held every other owner's
# sends and evaluations for the whole budget. Its budget counts its own slices, not the turns.
SLICE_S = 0.01
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
    that compile through one statement (query by query for the entities it left over its budget),
    the others through graphql-core with `context`, as are the entities whose data graphql-core
    reports errors for. `fields`: the compiler's field table."""
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
            left = await _compiled(pool, group, entity_ids, seller_id, budgets, out)
            if left.over_budget:
                left.errors.extend(
                    await _alone(pool, schema, fields, group.queries, entity_ids, left.over_budget, seller_id,
                                 budgets, out)
                )
            for qs, indexes in _by_queries(group.queries, left.errors).items():
                again = await evaluate_many(schema, context, list(qs), [global_ids[i] for i in indexes], budgets)
                for q in qs:
                    for i, outcome in zip(indexes, again[q], strict=True):
                        out[q][i] = outcome
    if rest:
        out.update(await evaluate_many(schema, context, rest, global_ids, budgets))
    return out


@dataclass
class Left:
    """The entities (indexes, in order) a compiled statement left without payloads: those past
    its time budget, and those whose data holds a value graphql-core reports as an error (their
    payloads carry `errors`, which graphql-core writes), by the query whose payload is missing
    (every query of the group: the merged data is the same for all)."""

    over_budget: list[int] = field(default_factory=list)
    errors: list[tuple[CompiledQuery, int]] = field(default_factory=list)


async def _alone(
    pool: asyncpg.Pool,
    schema: Any,
    fields: Fields,
    queries: Sequence[CompiledQuery],
    entity_ids: Sequence[int],
    indexes: list[int],
    seller_id: int | None,
    budgets: Budgets,
    out: dict[CompiledQuery, list[Outcome]],
) -> list[tuple[CompiledQuery, int]]:
    """The entities `indexes` of a group that ran over its budget, query by query: each query's
    own statement under the budget, a time breach where it runs over again (one query alone: at
    once). Fills `out`; returns the (query, entity) pairs left to graphql-core for their errors."""
    if len(queries) == 1:
        for i in indexes:
            out[queries[0]][i] = budgets.time_breach()
        return []
    errors: list[tuple[CompiledQuery, int]] = []
    for q in queries:
        alone = compile_group(schema, [q], fields)
        if isinstance(alone, str):  # it compiled with others, so never expected
            raise RuntimeError(f"a compiled webhook query did not compile alone: {alone}")
        mine: dict[CompiledQuery, list[Outcome]] = {}
        left = await _compiled(pool, alone, [entity_ids[i] for i in indexes], seller_id, budgets, mine)
        for j in left.over_budget:
            mine[q][j] = budgets.time_breach()
        for j, i in enumerate(indexes):
            out[q][i] = mine[q][j]
        errors.extend((q, indexes[j]) for _, j in left.errors)
    return errors


def _by_queries(
    queries: Sequence[CompiledQuery], pairs: list[tuple[CompiledQuery, int]]
) -> dict[tuple[CompiledQuery, ...], list[int]]:
    """(query, entity) pairs as graphql-core runs: the entities that need the same queries
    together (those the merged statement left need all of the group's, in one `evaluate_many`,
    as with compiled queries off), in order."""
    needs: dict[int, set[CompiledQuery]] = {}
    for q, i in pairs:
        needs.setdefault(i, set()).add(q)
    by: dict[tuple[CompiledQuery, ...], list[int]] = {}
    for i in sorted(needs):
        by.setdefault(tuple(q for q in queries if q in needs[i]), []).append(i)
    return by


async def _compiled(
    pool: asyncpg.Pool,
    group: CompiledGroup,
    entity_ids: Sequence[int],
    seller_id: int | None,
    budgets: Budgets,
    out: dict[CompiledQuery, list[Outcome]],
) -> Left:
    """Run the group's statement and put its payloads in `out`, entity by entity, within the
    time budget: the statement's, then its projection's (synchronous slices of SLICE_S, whose wall
    time is this group's own CPU). Returns what it left (`Left`): the caller fills those slots."""
    for q in group.queries:  # every slot is filled here, or by the caller for the entities left
        out[q] = [None] * len(entity_ids)  # type: ignore[list-item]
    try:
        async with pool.acquire() as conn:
            started_s = time.perf_counter()  # not counting the wait for a connection
            texts = await payload_sql.fetch_data(conn, group.plan, list(entity_ids), seller_id, budgets.time_s)
    except TimeoutError:
        log.info("a compiled statement of %d queries ran over its %s ms budget", len(group.queries), budgets.time_ms)
        return Left(over_budget=list(range(len(entity_ids))))
    spent_s = time.perf_counter() - started_s  # the statement's; the projection's slices are added
    left = Left()
    # The payloads are acyclic dicts and lists, all kept: the cyclic collector, which would run
    # every 700 allocations over a heap that holds every parsed query, finds nothing to free.
    # Paused for this synchronous loop (measured, CPU of a group, medians of 5: 1,000 webhooks ×
    # 20 invoices 0.86 s → 0.21 s; 10 × 100: 10 → 6 ms). It runs again as soon as the loop ends.
    collecting = gc.isenabled()
    gc.disable()
    try:
        slice_at = time.perf_counter()
        for done, text in enumerate(texts):
            now = time.perf_counter()
            if spent_s + (now - slice_at) > budgets.time_s:
                log.info("a compiled group's projection ran over its %s ms budget", budgets.time_ms)
                left.over_budget.extend(range(done, len(texts)))
                return left
            if now - slice_at > SLICE_S:  # the loop's turn: other owners' sends and evaluations
                spent_s += now - slice_at
                if collecting:
                    gc.enable()
                await asyncio.sleep(0)
                if collecting:
                    gc.disable()
                slice_at = time.perf_counter()
            if text is None:
                left.errors.extend((q, done) for q in group.queries)
                continue
            data = orjson.loads(text)
            for q in group.queries:
                out[q][done] = group.project(q, data)
    finally:
        if collecting:
            gc.enable()
    return left
