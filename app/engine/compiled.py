"""Evaluating a group's webhook queries through their compiled SQL (app.evaluation.sql, rendered
by app.store.payload_sql), and the rest through graphql-core (app.evaluation.execute).

One group — an owner's queries of one entity type — costs one statement per batch: PostgreSQL
builds every entity's merged `data`, and each query's payload is cut out of it. The outcomes are
those `evaluate_many` returns, so the producer encodes, size-checks, hashes and enqueues them
the same way whichever path made them.

Budgets: the statement runs under the group's time budget (`evaluation_timeout_ms`; asyncpg
cancels it on the server when it runs over). A statement that runs over is not a breach yet:
the group is evaluated by graphql-core instead, whose runs attribute a breach to the queries that
spent it (app.evaluation.execute). Payload size is checked when the producer encodes each payload."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from app.evaluation.compile import CompiledQuery
from app.evaluation.execute import Budgets, Outcome, evaluate_many
from app.evaluation.sql import FIELDS, Fields, compile_group, fallback_reason
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
    rest = [q for q in distinct if q not in compilable]
    out: dict[CompiledQuery, list[Outcome]] = {}
    if compilable:
        group = compile_group(schema, compilable, fields)
        texts: list[str] | None = None
        if isinstance(group, str):  # each compiles alone, so never expected
            log.warning("compiled webhook queries did not compile together: %s", group)
        else:
            try:
                async with pool.acquire() as conn:
                    texts = await payload_sql.fetch_data(conn, group.plan, list(entity_ids), seller_id, budgets.time_s)
            except TimeoutError:
                log.info("a compiled group ran over its %s ms budget; evaluating it by graphql-core", budgets.time_ms)
        if texts is None or isinstance(group, str):
            rest = distinct
        else:
            datas = [orjson.loads(t) for t in texts]
            for q in group.queries:
                out[q] = [group.project(q, data) for data in datas]
    if rest:
        out.update(await evaluate_many(schema, context, rest, global_ids, budgets))
    return out
