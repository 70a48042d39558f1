"""webhookReplay: re-deliver, at their current state, the entities a webhook had events for.

Only the replayed webhook hears about it. The entities are evaluated here, with the webhook
owner's visibility and the same compiled query and payload code as the producer, and enqueued as
pending events of that webhook alone through the producer's enqueue path
(`app.store.enqueue.enqueue_pending`: the same superseding, retry-clock and wake-up rules). Going
through the change table instead would re-evaluate the entities for every webhook of their type,
and send duplicates to the other webhooks that do not skip identical payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from app.api.context import Context, make_context
from app.evaluation.compile import QueryError, compile_query
from app.evaluation.execute import evaluate
from app.evaluation.selection import compile_filter
from app.policy import ids
from app.policy.envelope import encode_payload, new_event_id, payload_hash
from app.policy.filters import Condition, entity_root, matches
from app.store import enqueue
from app.store import webhooks as webhook_store
from app.types import EntityType, Visibility

REPLAY_BATCH = 200  # entities per evaluation and transaction: bounds memory and lock time


async def replay(schema: Any, ctx: Context, hook: asyncpg.Record, since: datetime) -> int | str:
    """Enqueue a fresh event for every entity `hook` had events for since `since`; returns how
    many, or why nothing could be replayed. Each event keeps the name (`invoice.deleted` …) and
    change time of the entity's latest event; its payload is the query's result now. An entity
    whose current payload the webhook's filter does not match is not replayed (nor counted)."""
    entity_type = EntityType(hook["entity_type"])
    compiled = compile_query(schema, hook["query"], entity_type)
    if isinstance(compiled, QueryError):  # only after a schema change broke a stored query
        return f"the webhook's query no longer compiles: {compiled.message}"
    condition: Condition | None = None
    if hook["filter"]:
        checked = compile_filter(hook["filter"], compiled)
        if isinstance(checked, str):
            return f"the webhook's filter no longer fits its query: {checked}"
        condition = checked
    root = entity_root(entity_type.graphql_name)
    async with ctx.pool.acquire() as conn:
        targets = await webhook_store.replay_targets(conn, hook["id"], entity_type.value, since)
    queued = 0
    for start in range(0, len(targets), REPLAY_BATCH):
        batch = targets[start : start + REPLAY_BATCH]
        # A fresh context per batch: its DataLoaders batch the entities, and their caches go away.
        # It carries the request's deadline, which the executor checks, and its share of the pool.
        context = make_context(
            ctx.pool, Visibility(hook["seller_id"]), ctx.settings, max_statements=ctx.loaders.max_statements
        )
        context.deadline = ctx.deadline
        gids = [ids.encode(entity_type.graphql_name, t["entity_id"]) for t in batch]
        payloads = await evaluate(schema, context, compiled, gids)
        kept = [
            (t, payload)
            for t, payload in zip(batch, payloads, strict=True)
            if condition is None or matches(condition, payload, root)
        ]
        texts = [encode_payload(payload) for _, payload in kept]
        events = [
            enqueue.FreshEvent(
                public_id=new_event_id(),
                entity_type=t["entity_type"],
                entity_id=t["entity_id"],
                event=t["event"],
                payload=text,
                payload_hash=payload_hash(text),
                changed_at=t["changed_at"],
            )
            for (t, _), text in zip(kept, texts, strict=True)
        ]
        async with ctx.pool.acquire() as conn, conn.transaction():
            queued += await enqueue.enqueue_pending(conn, hook["id"], events)
    return queued
