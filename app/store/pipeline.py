"""The engine's side of the store: folding changes into pending entities, claiming them,
enqueueing events (the one enqueue path: the producer's and webhookReplay's), claiming and
recording deliveries, pruning. The statements are in `sql/pipeline.sql`; they are set-based
(unnest arrays), so a batch costs a fixed number of statements whatever its size.

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

from app.policy.coalesce import fold_rules
from app.policy.masking import mask_request
from app.store.queries import load
from app.types import SendResult

Q = load("pipeline")

INGEST_LOCK_KEY = 0x686B716C01  # one ingester at a time keeps folding in commit order
CLAIM_LOCK_KEY = 0x686B716C02  # claims serialize across processes; sending does not
CHANGES_CHANNEL = "hookql_changes"
EVENTS_CHANNEL = "hookql_events"  # wakes the dispatchers: an event is left to a claim
# What a database restart or outage looks like from here: retry after a pause, never give up.
# (An administrator's shutdown arrives as OperatorInterventionError, not as a connection error.)
DB_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.OperatorInterventionError)

# What a delivery attempt needs of its webhook: read with the event by a claim, and by enqueueing
# when it hands fresh events straight to this process's dispatcher (`lock_for_enqueue`).
DELIVERY_WEBHOOK_COLUMNS = (
    "url", "method", "format", "headers", "secret", "previous_secret", "previous_secret_expires_at",
    "timeout_seconds", "max_attempts", "concurrency", "live_concurrency", "failing_since", "seller_id",
    "hmac_key", "hmac_header",
)


# --- ingest: changes → pending entities --------------------------------------------------------


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
    same time takes nothing (one at a time keeps folding in commit order). The fold and the due
    time are app.policy.coalesce's `fold` and `due_at`."""
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


# --- evaluate: claiming due entities ----------------------------------------------------------


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
    `Due.from_row`), the enabled webhooks of their types in id order, and the seconds until the
    next entity it left unclaimed is due (≤ 0: due already; None: nothing else pending)."""

    entities: list[asyncpg.Record]
    webhooks: list[SubscribedWebhook]
    next_due_in_s: float | None


async def claim_due(conn: asyncpg.Connection, limit: int, lease_s: float) -> Claim:
    """Lease up to `limit` due, unclaimed `pending_entities` rows for `lease_s`, earliest due first;
    with them the enabled webhooks of their types and when the next of the others is due — one
    statement (`claim_due` in sql/pipeline.sql)."""
    rows = await conn.fetch(*Q.claim_due(limit=limit, lease_s=lease_s))
    nexts = [r["due_in_s"] for r in rows if r["kind"] == "next"]
    return Claim(
        [r for r in rows if r["kind"] == "entity"],
        [SubscribedWebhook.from_row(r) for r in rows if r["kind"] == "webhook"],
        nexts[0] if nexts else None,
    )


async def release_claims(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> None:
    if types:
        await conn.execute(*Q.release_claims(types=types, ids=ids))


# --- enqueue ----------------------------------------------------------------------------------


async def lock_webhooks(conn: asyncpg.Connection, webhook_ids: list[int]) -> list[int]:
    """Lock webhook rows in id order; returns the ids that exist. Every transaction that updates
    both webhooks and their events (enqueueing, recording outcomes, manual actions) takes these
    first, so they cannot deadlock."""
    if not webhook_ids:
        return []
    return [r["id"] for r in await conn.fetch(*Q.lock_webhooks(webhook_ids=webhook_ids))]


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


async def reserve_and_read_hashes(
    conn: asyncpg.Connection, counts: dict[int, int], keys: list[tuple[int, str, int]]
) -> tuple[dict[int, int], dict[tuple[int, str, int], bytes | None]]:
    """Reserve `counts[w]` sequence numbers per webhook (returns the first of each range) and read
    the last enqueued payload hash of these (webhook, entity) keys, in one round trip. Call after
    `lock_webhooks`: this statement's snapshot then sees every hash a recorder reset before."""
    rows = await conn.fetch(
        *Q.reserve_and_read_hashes(
            counted_ids=list(counts),
            counts=list(counts.values()),
            webhook_ids=[k[0] for k in keys],
            types=[k[1] for k in keys],
            ids=[k[2] for k in keys],
        )
    )
    firsts = {r["webhook_id"]: r["first"] for r in rows if r["entity_type"] is None}
    hashes = {(r["webhook_id"], r["entity_type"], r["entity_id"]): r["hash"] for r in rows if r["entity_type"]}
    return firsts, hashes


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
    superseded: list[int],
    hashes: list[tuple[int, str, int, bytes]],
    done: list[tuple[str, int]],
    moved: list[tuple[str, int, datetime, datetime]],
) -> dict[str, int]:
    """The rest of an enqueue, in one round trip (its parts write disjoint rows): insert the
    events, link the events they `superseded` to them, remember the `hashes` of the payloads
    enqueued (webhook, type, id, hash), delete the entities evaluated (`done`), release the
    claims of those changed meanwhile (`moved`: type, id, new first change time, new due time;
    still pending for their newer changes), and wake dispatchers (NOTIFY) when an inserted
    event is left to a claim: pending and not leased.

    An event with `leased` set is inserted leased for `lease_s`, for this process to send
    without claiming it — unless an older event of its (webhook, entity) is still leased (in
    flight, or waiting in some process): one at a time per pair, so it is left to a claim. Call
    after `supersede`, which locked the pair's pending event. Returns the events inserted
    leased: public id → id."""
    # One list per NewEvent field, by name: `c["sequence"]` holds every row's sequence.
    c: dict[str, list[Any]] = {name: [] for name in _NEW_EVENT_FIELDS}
    if rows:
        c = dict(zip(_NEW_EVENT_FIELDS, map(list, zip(*map(_NEW_EVENT_COLUMNS, rows), strict=True)), strict=True))
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
            superseded_ids=superseded,
            hash_webhook_ids=[h[0] for h in hashes],
            hash_types=[h[1] for h in hashes],
            hash_ids=[h[2] for h in hashes],
            hashes=[h[3] for h in hashes],
            done_types=[k[0] for k in done],
            done_ids=[k[1] for k in done],
            moved_types=[k[0] for k in moved],
            moved_ids=[k[1] for k in moved],
            moved_first_change_ats=[k[2] for k in moved],
            moved_due_ats=[k[3] for k in moved],
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
    firsts, _ = await reserve_and_read_hashes(conn, {webhook_id: len(fresh)}, [])
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
        [c.id for c in clocks.values()],
        [(webhook_id, f.entity_type, f.entity_id, f.payload_hash) for f in fresh],
        [],
        [],
    )
    return len(rows)


@dataclass(frozen=True, slots=True)
class FailedEvaluation:
    """An event whose evaluation breached a budget: recorded FAILED with its error, never sent.
    `payload` is the JSON text the event log shows; `reason` the metric label (time, size)."""

    public_id: str
    webhook_id: int
    entity_type: str
    entity_id: int
    event: str
    sequence: int
    payload: str
    payload_hash: bytes
    changed_at: datetime
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class BudgetStreak:
    """A batch's effect on a webhook's consecutive budget breaches: `error` (the one to cite)
    when it breached, None when it only succeeded (the run of breaches ends)."""

    webhook_id: int
    error: str | None


async def record_budget_outcomes(
    conn: asyncpg.Connection, failed: list[FailedEvaluation], streaks: list[BudgetStreak], breaches_to_disable: int
) -> list[tuple[int, str]]:
    """Record a batch's budget breaches (call inside the enqueue transaction, after
    `lock_webhooks`): the FAILED events, the breach counter, and each webhook's run of
    consecutive breaches — extended by a breach, ended by a success; a webhook whose run reaches
    `breaches_to_disable` is disabled with the reason, as a 410 disables one. Returns the
    webhooks disabled by this call: (id, reason)."""
    rows = await conn.fetch(
        *Q.record_budget_outcomes(
            public_ids=[f.public_id for f in failed],
            webhook_ids=[f.webhook_id for f in failed],
            entity_types=[f.entity_type for f in failed],
            entity_ids=[f.entity_id for f in failed],
            events=[f.event for f in failed],
            sequences=[f.sequence for f in failed],
            payloads=[f.payload for f in failed],
            payload_hashes=[f.payload_hash for f in failed],
            changed_ats=[f.changed_at for f in failed],
            errors=[f.error for f in failed],
            reasons=[f.reason for f in failed],
            streak_webhook_ids=[s.webhook_id for s in streaks],
            streak_errors=[s.error for s in streaks],
            breaches_to_disable=breaches_to_disable,
        )
    )
    return [(r["id"], r["disabled_reason"]) for r in rows if r["disable"]]


# --- delivery ---------------------------------------------------------------------------------


@dataclass(slots=True)  # built per row: see the module docstring
class ClaimedEvent:
    """An event leased to this process (by a claim, or inserted leased by an enqueue and handed
    over), with its webhook's delivery configuration (DELIVERY_WEBHOOK_COLUMNS) as read then.
    `payload` is the stored JSON text; `entity_type` and `entity_id` are None for a ping."""

    id: int
    public_id: str
    webhook_id: int
    entity_type: str | None
    entity_id: int | None
    event: str
    sequence: int
    payload: str
    changed_at: datetime
    attempts: int
    url: str
    method: str
    format: str
    headers: list[dict[str, str]]
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    timeout_seconds: float
    max_attempts: int
    concurrency: int
    live_concurrency: int
    failing_since: datetime | None
    seller_id: int | None
    hmac_key: str | None
    hmac_header: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClaimedEvent:
        """A `claim_events` row: its columns are this class's fields, in order (a test pins it)."""
        return cls(*row)

    def webhook(self) -> dict[str, Any]:
        """The webhook's configuration as an attempt is built from it (app.policy.attempt)."""
        return {
            "url": self.url,
            "method": self.method,
            "format": self.format,
            "headers": self.headers,
            "secret": self.secret,
            "previous_secret": self.previous_secret,
            "previous_secret_expires_at": self.previous_secret_expires_at,
            "timeout_seconds": self.timeout_seconds,
            "hmac_key": self.hmac_key,
            "hmac_header": self.hmac_header,
        }


async def claim_events(
    conn: asyncpg.Connection,
    limit: int,
    lease_s: float,
    scan_limit: int,
    finished: list[int],
    ahead: int,
    owner_max_held: int,
) -> list[ClaimedEvent]:
    """Lease up to `limit` due events, at most `ahead` × live concurrency leased per webhook and
    `owner_max_held` per owner (a seller, or the operator), owners taking turns (app.policy.lanes).
    `finished`: this process's attempts sent and not yet recorded, which hold no slot. Each row
    carries the event and its webhook's DELIVERY_WEBHOOK_COLUMNS. The lock is taken in its own
    statement first, so the claim runs on a snapshot that sees every lease committed before it
    (one statement would not)."""
    async with conn.transaction():
        await conn.execute(*Q.claim_lock(lock_key=CLAIM_LOCK_KEY))
        rows = await conn.fetch(
            *Q.claim_events(
                limit=limit,
                lease_s=lease_s,
                scan_limit=scan_limit,
                finished=finished,
                ahead=ahead,
                owner_max_held=owner_max_held,
            )
        )
    return [ClaimedEvent.from_row(r) for r in rows]


async def renew_leases(conn: asyncpg.Connection, event_ids: list[int], lease_s: float) -> list[int]:
    """Extend the leases of events this process holds; returns those that are no longer its to
    send (cancelled, delivered elsewhere after an expired lease, webhook disabled or deleted)."""
    return [r["id"] for r in await conn.fetch(*Q.renew_leases(event_ids=event_ids, lease_s=lease_s))]


async def next_event_due_in_s(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next unleased pending event of an enabled webhook is due, or None."""
    due = await conn.fetchval(*Q.next_event_due_in_s())
    return None if due is None else float(due)


def attempt_values(event_id: int, webhook_id: int, result: SendResult) -> tuple[object, ...]:
    """A `webhook_attempts` row, in the column order `record_attempts` takes; the request's
    secrets masked (app.policy.masking: masked when written, see migration 0013)."""
    request = mask_request(result.request) if result.request is not None else None
    return (
        event_id,
        webhook_id,
        result.started_at,
        result.duration_ms,
        result.status_code,
        result.response_headers,
        result.response_body,
        result.error,
        request.method if request else None,
        request.url if request else None,
        request.headers if request else None,
        request.body if request else None,
    )


class EventOutcome(NamedTuple):
    """What an attempt leaves its event: `status` (applied only if the event is still pending)
    and when the next attempt is due."""

    event_id: int
    status: str
    next_attempt_at: datetime


async def record_attempts(
    conn: asyncpg.Connection,
    attempts: list[tuple[Any, ...]],
    events: list[EventOutcome],
    webhook_ids: list[int],
) -> None:
    """A batch of attempt results, in one statement (`record_attempts` in sql/pipeline.sql: no
    transaction needed around it). `attempts` are `webhook_attempts` rows in column order
    (`attempt_values`); `events` what each attempt leaves its event; `webhook_ids` their webhooks.

    Webhook rows are only KEY SHARE locked here (a webhook delete waits; enqueueing, which locks
    them for update, does not), and event rows are locked in id order, as enqueueing's supersede
    does: recording and enqueueing for the same webhooks never wait for each other's whole
    transaction, and cannot deadlock. Claimers are woken only when these outcomes left events of
    these webhooks claimable (a newer state that waited for the one in flight, or events held
    back by the concurrency the released leases took)."""
    columns: list[list[Any]] = [list(c) for c in zip(*attempts, strict=True)] if attempts else [[]] * 12
    (
        attempt_event_ids,
        hook_ids,
        attempted_ats,
        durations_ms,
        status_codes,
        headers,
        bodies,
        errors,
        methods,
        urls,
        request_headers,
        request_bodies,
    ) = columns
    event_ids, statuses, next_attempt_ats = (
        (list(c) for c in zip(*events, strict=True)) if events else ([], [], [])
    )
    await conn.execute(
        *Q.record_attempts(
            webhook_ids=sorted(webhook_ids),
            attempt_event_ids=attempt_event_ids,
            attempt_webhook_ids=hook_ids,
            attempted_ats=attempted_ats,
            durations_ms=durations_ms,
            status_codes=status_codes,
            response_headers=headers,
            response_bodies=bodies,
            errors=errors,
            request_methods=methods,
            request_urls=urls,
            request_headers=request_headers,
            request_bodies=request_bodies,
            event_ids=event_ids,
            statuses=statuses,
            next_attempt_ats=next_attempt_ats,
            channel=EVENTS_CHANNEL,
        )
    )


@dataclass(slots=True)
class OutcomeCounts:
    """One webhook's outcomes in a batch of attempts, as its health is updated from them."""

    delivered: int = 0
    rate_limited: int = 0  # also counted in `failed`
    failed: int = 0
    gone: int = 0

    def only_delivered(self) -> bool:
        """Every outcome was a delivery: nothing to change for a webhook already healthy and at
        full concurrency."""
        return self.delivered > 0 and not (self.rate_limited or self.failed or self.gone)


class WebhookState(NamedTuple):
    """A webhook after its health was recorded."""

    id: int
    enabled: bool
    live_concurrency: int


def _duration_text(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    if days and not rest:
        return f"{days} day" + ("s" if days > 1 else "")
    return f"{seconds:g} s"


async def record_webhook_health(
    conn: asyncpg.Connection,
    webhooks: Mapping[int, OutcomeCounts],
    failed_pairs: list[tuple[int, str, int]],
    disable_after_s: float,
) -> list[WebhookState]:
    """What a batch of outcomes does to its webhooks (call inside a transaction, after
    `record_attempts` committed). A webhook whose attempts have only failed for `disable_after_s`
    is disabled; one answered 410 Gone is disabled at once. failed_pairs: (webhook, entity) whose
    state never reached the receiver: their skip hash is forgotten, under the webhook lock
    enqueueing reads it with.

    `live_concurrency` follows app.policy.retry.next_concurrency, the rule's one statement, mirrored
    here in SQL; tests/integration/test_concurrency_rule.py pins the two together."""
    await lock_webhooks(conn, sorted(webhooks))
    states: list[WebhookState] = []
    if webhooks:
        counts = list(webhooks.values())
        rows = await conn.fetch(
            *Q.record_webhook_health(
                webhook_ids=list(webhooks),
                delivered=[c.delivered for c in counts],
                rate_limited=[c.rate_limited for c in counts],
                failed=[c.failed for c in counts],
                gone=[c.gone for c in counts],
                disable_after_s=disable_after_s,
                failing_reason=f"every delivery failed for {_duration_text(disable_after_s)}",
            )
        )
        states = [WebhookState(*r) for r in rows]
    if failed_pairs:
        hook_ids, types, ids = (list(c) for c in zip(*failed_pairs, strict=True))
        await conn.execute(*Q.forget_payload_hashes(webhook_ids=hook_ids, types=types, ids=ids))
    return states


async def release_leases(conn: asyncpg.Connection, event_ids: list[int]) -> None:
    if event_ids:
        await conn.execute(*Q.release_leases(event_ids=event_ids))


async def prune(conn: asyncpg.Connection, retention_s: float, limit: int) -> int:
    """Delete up to `limit` finished events past retention: delivered, skipped and superseded
    ones. Failed and cancelled events stay for a person to look at. Returns how many."""
    result = await conn.execute(*Q.prune(retention_s=retention_s, limit=limit))
    return int(result.rsplit(" ", 1)[-1])
