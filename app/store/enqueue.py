"""Enqueueing events: the one enqueue path (the producer's, and webhookReplay's and the dashboard's
through `enqueue_pending`). The statements are in `sql/enqueue.sql`; they are set-based (unnest
arrays), so a batch costs a fixed number of statements whatever its size.

Rows the engine reads back are typed here (`from_row`); rows it writes are dataclasses whose
fields the statements name. They are values: nothing mutates one after it is built. Those built
once per entity or event (thousands a batch) are slotted but not frozen, and read a claim's
record by position: a frozen dataclass's `__init__` sets each field through `object.__setattr__`
(4 µs for NewEvent's 14 fields against 0.3 µs on the 2-CPU dev machine, 2026-12-02), and
`cls(**record)` costs 15 µs for ClaimedEvent's 23 columns against 0.7 µs for `cls(*record)`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import asyncpg

from app.store.delivery import DELIVERY_WEBHOOK_COLUMNS, EVENTS_CHANNEL, lock_webhooks
from app.store.queries import load

Q = load("enqueue")


@dataclass(frozen=True, slots=True)
class HandoffWebhook:
    """A webhook locked for enqueueing, with what a hand-off needs: whether it is enabled for HTTP
    delivery (a webhook held by `hookql listen` is not: app.store.listen), how many
    of its events are leased (`leased`) and how many of its owner's over all the owner's webhooks
    (`owner_leased`; the owner is the seller, or the operator), and its delivery configuration
    (`delivery`: the DELIVERY_WEBHOOK_COLUMNS, as a claim returns them with an event)."""

    id: int
    enabled: bool
    seller_id: int | None
    live_concurrency: int
    failing_since: datetime | None
    leased: int
    owner_leased: int
    delivery: dict[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HandoffWebhook:
        return cls(row["id"], row["enabled"], row["seller_id"], row["live_concurrency"], row["failing_since"],
                   row["leased"], row["owner_leased"], {c: row[c] for c in DELIVERY_WEBHOOK_COLUMNS})


@dataclass(slots=True)  # built per row: see the module docstring
class RetryClock:
    """A superseded pending event's retry clock: the attempts it made and when the next was due.
    The event that supersedes it inherits both (see `pending_event`)."""

    id: int
    webhook_id: int
    entity_type: str
    entity_id: int
    attempts: int
    next_attempt_at: datetime

    @property
    def key(self) -> tuple[int, str, int]:
        return self.webhook_id, self.entity_type, self.entity_id

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RetryClock:
        return cls(row["id"], row["webhook_id"], row["entity_type"], row["entity_id"], row["attempts"],
                   row["next_attempt_at"])


async def supersede(
    conn: asyncpg.Connection, webhook_ids: list[int], types: list[str], ids: list[int]
) -> list[RetryClock]:
    """Mark the pending events of these (webhook, entity) pairs superseded; return their retry
    clocks. Locks the pairs' pending events: no new lease on a pair appears until commit."""
    if not webhook_ids:
        return []
    rows = await conn.fetch(*Q.supersede(webhook_ids=webhook_ids, types=types, ids=ids))
    return [RetryClock.from_row(r) for r in rows]


async def reserve_sequences(conn: asyncpg.Connection, counts: dict[int, int]) -> dict[int, int]:
    """Reserve `counts[w]` sequence numbers for each webhook `w`; return the first of each range.
    Webhooks that no longer exist are missing from the answer. Call after `lock_webhooks`."""
    rows = await conn.fetch(*Q.reserve_sequences(webhook_ids=list(counts), counts=list(counts.values())))
    return {r["webhook_id"]: r["first"] for r in rows}


class Candidate(NamedTuple):
    """What an evaluation produced for one (webhook, entity), as `prepare_enqueue` weighs it: `kind`
    'payload', 'breach' (the evaluation budget was exceeded) or 'filtered' (the webhook's filter
    did not match); a payload's hash, and whether its webhook skips a payload identical to the
    last one enqueued."""

    webhook_id: int
    entity_type: str
    entity_id: int
    kind: str
    payload_hash: bytes | None
    skip_identical: bool


class ClaimedVersion(NamedTuple):
    """A claimed entity as the evaluator claimed it."""

    entity_type: str
    entity_id: int
    version: int
    action: str


class Verdict(NamedTuple):
    """A claimed entity at enqueue time (`prepare_enqueue`): 'done' (unchanged since its claim),
    'moved' (changed since, no delete involved: its payloads are sent and it stays pending) or
    'held' (changed since with a delete involved: nothing is sent, it is evaluated again);
    `last_change_at` is its latest change now."""

    entity_type: str
    entity_id: int
    verdict: str
    last_change_at: datetime

    @property
    def key(self) -> tuple[str, int]:
        return self.entity_type, self.entity_id

    @property
    def sendable(self) -> bool:
        return self.verdict in ("done", "moved")


@dataclass(frozen=True, slots=True)
class Prepared:
    """An enqueue's first statement, answered (`prepare_enqueue`). An entity whose pending row is
    gone has no verdict: nothing of it is sent. `reserved[w]` sequence numbers from `firsts[w]`
    are the webhook's, one per sendable candidate that is not filtered, in the caller's order."""

    verdicts: list[Verdict]
    webhooks: list[HandoffWebhook]
    firsts: dict[int, int]
    reserved: dict[int, int]
    previous_hashes: dict[tuple[int, str, int], bytes | None]
    superseded: list[RetryClock]


async def prepare_enqueue(
    conn: asyncpg.Connection, claimed: Sequence[ClaimedVersion], webhook_ids: list[int], candidates: Sequence[Candidate]
) -> Prepared:
    """An enqueue's first statement (`hookql_enqueue_prepare`, migration 0022), in the caller's
    transaction: lock the claimed entities and judge each against its claim (`Verdict`), lock the
    webhooks `webhook_ids` and read them as a hand-off does, reserve the sendable candidates'
    sequence numbers, read their pairs' last payload hashes and supersede the pending event of
    each pair whose payload is not skipped as identical (`is_skipped`), returning their retry
    clocks. Webhooks that no longer exist are missing from the answer."""
    rows = await conn.fetch(
        *Q.enqueue_prepare(
            types=[c.entity_type for c in claimed],
            ids=[c.entity_id for c in claimed],
            versions=[c.version for c in claimed],
            claimed_actions=[c.action for c in claimed],
            webhook_ids=sorted(webhook_ids),
            c_webhook_ids=[c.webhook_id for c in candidates],
            c_types=[c.entity_type for c in candidates],
            c_ids=[c.entity_id for c in candidates],
            c_kinds=[c.kind for c in candidates],
            c_hashes=[c.payload_hash for c in candidates],
            c_skips=[c.skip_identical for c in candidates],
        )
    )
    verdicts, webhooks, superseded = [], [], []
    firsts: dict[int, int] = {}
    reserved: dict[int, int] = {}
    previous: dict[tuple[int, str, int], bytes | None] = {}
    for r in rows:
        kind = r["kind"]
        if kind == "entity":
            verdicts.append(Verdict(r["entity_type"], r["entity_id"], r["verdict"], r["last_change_at"]))
        elif kind == "webhook":
            webhooks.append(HandoffWebhook.from_row(r))
        elif kind == "first":
            firsts[r["webhook_id"]] = r["first"]
            reserved[r["webhook_id"]] = r["reserved"]
        elif kind == "hash":
            previous[(r["webhook_id"], r["entity_type"], r["entity_id"])] = r["hash"]
        else:
            superseded.append(RetryClock(r["event_id"], r["webhook_id"], r["entity_type"], r["entity_id"],
                                         r["attempts"], r["next_attempt_at"]))
    return Prepared(verdicts, webhooks, firsts, reserved, previous, superseded)


def is_skipped(key: Candidate, previous_hash: bytes | None) -> bool:
    """Whether a new payload is skipped as identical to the last one enqueued for its pair (the
    rule `prepare_enqueue` applies in SQL: it leaves a skipped pair's pending event be)."""
    return key.skip_identical and previous_hash == key.payload_hash


@dataclass(slots=True)  # built per row: see the module docstring
class NewEvent:
    """An event to insert (`finish_enqueue`). `payload` is its JSON text. `finished`: inserted
    finished (a skipped event, `skip_reason` saying why: 'identical' or 'filtered'; a filtered
    one has no `sequence`). `leased`: inserted leased to this process, to be handed to its
    dispatcher. `next_attempt_at` None means due now."""

    public_id: str
    webhook_id: int
    entity_type: str
    entity_id: int
    event: str
    sequence: int | None
    status: str
    payload: str
    payload_hash: bytes
    changed_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    finished: bool
    leased: bool
    skip_reason: str | None = None

    @property
    def key(self) -> tuple[int, str, int]:
        return self.webhook_id, self.entity_type, self.entity_id


# finish_enqueue's column arrays: every field of a row in one C-level call.
_NEW_EVENT_FIELDS = tuple(f.name for f in fields(NewEvent))
_NEW_EVENT_COLUMNS = attrgetter(*_NEW_EVENT_FIELDS)


def pending_event(
    *,
    public_id: str,
    webhook_id: int,
    entity_type: str,
    entity_id: int,
    event: str,
    sequence: int,
    payload: str,
    payload_hash: bytes,
    changed_at: datetime,
    clock: RetryClock | None,
    leased: bool,
) -> NewEvent:
    """A pending event; one that supersedes a pending event keeps its retry clock (`clock`): a
    newer state of the entity does not reset the backoff of a receiver that is failing, nor its
    attempt budget."""
    return NewEvent(
        public_id, webhook_id, entity_type, entity_id, event, sequence, "pending", payload, payload_hash,
        changed_at, clock.attempts if clock else 0, clock.next_attempt_at if clock else None, False, leased,
    )


def may_hand_off(clock: RetryClock | None) -> bool:
    """Whether a new event may go straight to this process's dispatcher: not while it inherits a
    retry backoff (the event it supersedes failed; its clock decides when to try again)."""
    return clock is None or clock.attempts == 0


async def finish_enqueue(
    conn: asyncpg.Connection,
    rows: Sequence[NewEvent],
    lease_s: float,
    superseded: Sequence[RetryClock],
    hashes: list[tuple[int, str, int, bytes]],
    done: list[tuple[str, int]],
    moved: list[tuple[str, int, datetime]],
    *,
    debounce_ms: int,
    max_delay_ms: int,
) -> dict[str, int]:
    """The rest of an enqueue, in one round trip (its parts write disjoint rows): insert the
    events, link the pending events they `superseded` (`supersede`'s retry clocks) to them
    (`superseded_by`: the new pending event of the same (webhook, entity)), remember the
    `hashes` of the payloads enqueued (webhook, type, id, hash), delete the entities evaluated
    (`done`), release the claims of those changed meanwhile (`moved`: type, id, new first change
    time; still pending for their newer changes, due by the coalesce rule, `hookql_due_at`
    (migration 0025), with `debounce_ms` and `max_delay_ms`), and wake dispatchers (NOTIFY) when
    an inserted event is left to a claim: pending and not leased.

    An event with `leased` set is inserted leased for `lease_s`, for this process to send
    without claiming it — unless an older event of its (webhook, entity) is still leased (in
    flight, or waiting in some process): one at a time per pair, so it is left to a claim. Call
    after `supersede`, which locked the pair's pending event. Returns the events inserted
    leased: public id → id."""
    # One list per NewEvent field, by name: `c["sequence"]` holds every row's sequence.
    c: dict[str, list[Any]] = {name: [] for name in _NEW_EVENT_FIELDS}
    if rows:
        c = dict(zip(_NEW_EVENT_FIELDS, map(list, zip(*map(_NEW_EVENT_COLUMNS, rows), strict=True)), strict=True))
    # Paired here, not joined in the statement: see `link` in sql/enqueue.sql.
    replacing = {e.key: e.public_id for e in rows if e.status == "pending"}
    links = [(clock.id, replacing[clock.key]) for clock in superseded if clock.key in replacing]
    leased_rows = await conn.fetch(
        *Q.finish_enqueue(
            public_ids=c["public_id"],
            webhook_ids=c["webhook_id"],
            entity_types=c["entity_type"],
            entity_ids=c["entity_id"],
            events=c["event"],
            sequences=c["sequence"],
            statuses=c["status"],
            payloads=c["payload"],
            payload_hashes=c["payload_hash"],
            changed_ats=c["changed_at"],
            attempts=c["attempts"],
            next_attempt_ats=c["next_attempt_at"],
            finished=c["finished"],
            leased=c["leased"],
            skip_reasons=c["skip_reason"],
            lease_s=lease_s,
            superseded_ids=[link[0] for link in links],
            superseding_public_ids=[link[1] for link in links],
            hash_webhook_ids=[h[0] for h in hashes],
            hash_types=[h[1] for h in hashes],
            hash_ids=[h[2] for h in hashes],
            hashes=[h[3] for h in hashes],
            done_types=[k[0] for k in done],
            done_ids=[k[1] for k in done],
            moved_types=[k[0] for k in moved],
            moved_ids=[k[1] for k in moved],
            moved_first_change_ats=[k[2] for k in moved],
            debounce_s=debounce_ms / 1000,
            max_delay_s=max_delay_ms / 1000,
            channel=EVENTS_CHANNEL,
        )
    )
    return {r["public_id"]: r["id"] for r in leased_rows if r["id"] is not None}


@dataclass(frozen=True, slots=True)
class FreshEvent:
    """A state of one entity to enqueue for one webhook, due now (`enqueue_pending`). `payload` is
    its JSON text; `payload_hash` the hash skip-identical compares later payloads with."""

    public_id: str
    entity_type: str
    entity_id: int
    event: str
    payload: str
    payload_hash: bytes
    changed_at: datetime


async def enqueue_pending(conn: asyncpg.Connection, webhook_id: int, fresh: Sequence[FreshEvent]) -> int:
    """Enqueue pending events for one webhook through the producer's statements and rules: the
    webhook's row is locked first (the engine's lock order), sequences are reserved, pending events
    of the same entities are superseded and their retry clocks kept (`pending_event`), the payload
    hashes become the ones later changes are compared with, and dispatchers are woken when an
    event is left to a claim. Nothing is skipped as identical (the caller asked for these states
    to be sent). Returns how many were enqueued (0 if the webhook is gone). Run inside a
    transaction."""
    if not fresh or not await lock_webhooks(conn, [webhook_id]):
        return 0
    firsts = await reserve_sequences(conn, {webhook_id: len(fresh)})
    clocks = {
        (c.entity_type, c.entity_id): c
        for c in await supersede(
            conn, [webhook_id] * len(fresh), [f.entity_type for f in fresh], [f.entity_id for f in fresh]
        )
    }
    first = firsts[webhook_id]
    rows = [
        pending_event(
            public_id=f.public_id,
            webhook_id=webhook_id,
            entity_type=f.entity_type,
            entity_id=f.entity_id,
            event=f.event,
            sequence=first + n,
            payload=f.payload,
            payload_hash=f.payload_hash,
            changed_at=f.changed_at,
            clock=clocks.get((f.entity_type, f.entity_id)),
            leased=False,
        )
        for n, f in enumerate(fresh)
    ]
    await finish_enqueue(
        conn,
        rows,
        0.0,
        list(clocks.values()),
        [(webhook_id, f.entity_type, f.entity_id, f.payload_hash) for f in fresh],
        [],
        [],
        debounce_ms=0,  # nothing is moved: no due time is computed
        max_delay_ms=0,
    )
    return len(rows)
