"""Pending entities: captured changes folded in (`ingest`), and the due ones claimed by an
evaluator (`claim_due`). The statements are in `sql/pending.sql`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.policy.coalesce import fold_rules
from app.store.queries import load

Q = load("pending")

INGEST_LOCK_KEY = 0x686B716C01  # one ingester at a time keeps folding in commit order
CHANGES_CHANNEL = "hookql_changes"


async def any_changes(conn: asyncpg.Connection) -> bool:
    """Whether any captured change waits to be ingested: a sweep that finds nothing costs this
    one cheap statement rather than an ingest."""
    return bool(await conn.fetchval(*Q.any_changes()))


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one ingest did: `taken` changes folded; `next_due_in_s`, seconds from its start until
    the earliest due time it wrote (None: it wrote none — nothing taken, or every entity folded
    to nothing)."""

    taken: int
    next_due_in_s: float | None


# The coalesce rule as hookql_fold reads it: 'previous+next' → folded action (null: cancelled out).
_FOLD_RULES = fold_rules()  # jsonb: encoded by the connection's codec (db.init_connection)


async def ingest(conn: asyncpg.Connection, limit: int, debounce_ms: int, max_delay_ms: int) -> Ingested:
    """Fold up to `limit` captured changes, oldest first, into `pending_entities` — one statement
    outside any transaction (`hookql_ingest`, migration 0021): a second ingester running at the
    same time takes nothing (one at a time keeps folding in commit order). The fold is
    app.policy.coalesce's `fold`; the due time is `hookql_due_at`'s (migration 0025)."""
    row = await conn.fetchrow(
        *Q.ingest(
            lock_key=INGEST_LOCK_KEY,
            max_changes=limit,
            rules=_FOLD_RULES,
            debounce_s=debounce_ms / 1000,
            max_delay_s=max_delay_ms / 1000,
        )
    )
    return Ingested(row["taken"], row["next_due_in_s"])


async def next_entity_due_in_s(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next unclaimed entity is due (negative: overdue), or None."""
    due = await conn.fetchval(*Q.next_entity_due_in_s())
    return None if due is None else float(due)


@dataclass(frozen=True, slots=True)
class SubscribedWebhook:
    """An enabled webhook as the producer evaluates for it."""

    id: int
    seller_id: int | None
    entity_type: str
    query: str
    events: list[str]
    skip_identical_payloads: bool
    budget_breaches: int
    filter: str | None  # the delivery filter's text (app.policy.filters), None: deliver every payload

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SubscribedWebhook:
        return cls(row["id"], row["seller_id"], row["entity_type"], row["query"], row["events"],
                   row["skip_identical_payloads"], row["budget_breaches"], row["filter"])


@dataclass(frozen=True, slots=True)
class Claim:
    """An evaluator's claim (`claim_due`): the entities leased (`pending_entities` rows, read with
    `Due.from_row`), the enabled webhooks of their types in id order, the seconds until the
    next entity it left unclaimed is due (≤ 0: due already; None: nothing else pending), and how
    many owners — sellers, and the operator — have enabled webhooks of any type."""

    entities: list[asyncpg.Record]
    webhooks: list[SubscribedWebhook]
    next_due_in_s: float | None
    owners: int


async def claim_due(
    conn: asyncpg.Connection, limit: int, lease_s: float, skip_owners: Sequence[int] = ()
) -> Claim:
    """Lease up to `limit` due, unclaimed `pending_entities` rows for `lease_s`, their owners (the
    entities' sellers, 0 for none) taking turns, each one's earliest due first, but for the owners
    in `skip_owners`; with them the enabled webhooks of their types, when the next of the others is
    due and how many owners have webhooks — one statement (`claim_due` in sql/pending.sql)."""
    rows = await conn.fetch(*Q.claim_due(limit=limit, lease_s=lease_s, skip_owners=list(skip_owners)))
    [last] = [r for r in rows if r["kind"] == "next"]  # an aggregate: exactly one row
    return Claim(
        [r for r in rows if r["kind"] == "entity"],
        [SubscribedWebhook.from_row(r) for r in rows if r["kind"] == "webhook"],
        last["due_in_s"],
        last["owners"],
    )


async def release_claims(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> None:
    if types:
        await conn.execute(*Q.release_claims(types=types, ids=ids))
