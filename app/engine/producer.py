"""From captured changes to webhook events: fold bursts per entity, wait out the debounce, run
each subscriber's query once per (query, visibility) for the batch, skip identical payloads,
supersede stale pending events, and enqueue the rest for the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from app.config import Settings
from app.engine.compiled import evaluate_group
from app.engine.wakeups import Wakeups, wait_any
from app.evaluation.budgets import Meter
from app.evaluation.compile import CompiledQuery, QueryError, compile_query
from app.evaluation.execute import Breach, Budgets, Encoded, cancel_abandoned, encode_within, evaluate_many
from app.policy import ids
from app.policy.coalesce import due_at
from app.policy.envelope import encode_payload, event_name, new_event_id, payload_hash
from app.policy.filters import Condition, FilterError, entity_root, matches, parse
from app.store import budget_breaches, db, delivery, enqueue, pending
from app.store.pending import SubscribedWebhook
from app.types import Action, EntityType, Visibility

log = logging.getLogger(__name__)

INGEST_BATCH = 5000  # changes folded per transaction
EVALUATE_BATCH = 500  # at most this many entities evaluated together (DataLoaders batch across them)
# ...and at most about this many events per batch: with many webhooks per entity a batch is cut
# smaller, so deliveries start flowing sooner and a batch's payloads stay few in memory.
EVENTS_PER_BATCH = 2000
# ...and at most about this many GraphQL executions (one per entity per type × visibility group):
# a batch is CPU-bound while it evaluates, so its size is the pause it puts into delivery.
EXECUTIONS_PER_BATCH = 500
FIRST_BATCH = 20
CLAIM_LEASE_S = 15.0  # an entity claimed by a crashed process is retried after this (a batch takes ~0.1-2 s)
SWEEP_INTERVAL_S = 1.0  # longest sleep: finds changes whose notification was lost
DUE_PAD_S = 0.001  # wake this long after a due time, so the database's now() has passed it
ERROR_BACKOFF_S = 1.0
# An announced change is ingested this share of the debounce later (at most INGEST_LINGER_MAX_S),
# with whatever else was committed meanwhile: at hundreds of commits a second, an ingest per
# commit cost PostgreSQL several times the statements (and the statement's fixed cost) for the
# same folds. Due times count from the changes, not from the ingest, so no delivery is later.
INGEST_LINGER_SHARE = 0.1
INGEST_LINGER_MAX_S = 0.02
# Delivery paces evaluation: while this process's dispatcher is saturated (every send slot taken
# with attempts waiting, or recording a batch behind, no owner counting beyond its share:
# app.policy.pacing), the evaluator does not start another batch.
# Its entities stay pending meanwhile and fold the changes that keep coming, so in overload the
# work goes into deliveries rather than into payloads that wait unsent until a newer state
# supersedes them. After PACE_MAX_WAIT_S of saturation it evaluates a batch anyway: a dispatcher
# that stays saturated that long is stuck, and another process may deliver what it enqueues.
PACE_MAX_WAIT_S = 5.0
PACE_CHECK_S = 0.25  # the stop signal is looked at this often while waiting


class Handoff(Protocol):
    """Where freshly enqueued events go to be sent at once, skipping the NOTIFY and the claim
    round trips: this process's dispatcher. Events are inserted already leased to it."""

    lease_s: float

    def capacity(self) -> int:
        """Events it takes now (0 while stopping)."""
        ...

    def budget(self, webhook: enqueue.HandoffWebhook) -> int:
        """Events of this webhook it may be leased now."""
        ...

    def owner_budget(self, webhook: enqueue.HandoffWebhook) -> int:
        """Events of this webhook's owner, over all the owner's webhooks, it may be leased now."""
        ...

    def accept(self, rows: list[delivery.ClaimedEvent]) -> None:
        """Committed events, leased to it, to send."""
        ...

    def saturated(self) -> bool:
        """Delivery is the bottleneck: every send slot is taken with attempts waiting for one, or
        recording lags a batch behind, and no owner alone makes it so (app.policy.pacing): what
        it is handed now only waits."""
        ...

    async def room(self, timeout_s: float) -> None:
        """Returns when it is no longer saturated, or after `timeout_s`."""
        ...


@dataclass(frozen=True, slots=True)
class Filtered:
    """A payload the webhook's filter did not match: recorded SKIPPED ('filtered'), never sent."""

    encoded: Encoded


@functools.lru_cache(maxsize=1024)
def _condition(text: str) -> Condition | None:
    """A stored filter, parsed once per process. Stored filters were checked when registered;
    one that no longer parses (None) lets every payload through, and says so in the log."""
    try:
        return parse(text)
    except FilterError as exc:
        log.error("a stored filter no longer parses; delivering every payload: %s", exc)
        return None


@dataclass(frozen=True, slots=True)
class Due:
    entity_type: EntityType
    entity_id: int
    action: Action
    seller_id: int | None
    last_change_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Due:
        """A claimed `pending_entities` row (`pending.claim_due`)."""
        return cls(EntityType(row["entity_type"]), row["entity_id"], Action(row["action"]), row["seller_id"],
                   row["last_change_at"], row["version"])

    @property
    def key(self) -> tuple[str, int]:
        return self.entity_type.value, self.entity_id

    @property
    def global_id(self) -> str:
        return ids.encode(self.entity_type.graphql_name, self.entity_id)


class Producer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        schema: Any,
        make_context: Callable[..., Any],
        wakeups: Wakeups,
        handoff: Handoff | None = None,
    ) -> None:
        self.pool = pool
        self.handoff = handoff
        self.settings = settings
        self.schema = schema
        self.make_context = make_context
        self.wakeups = wakeups
        self._stopping = asyncio.Event()
        self._ingested = asyncio.Event()  # set by the ingest loop, waited on by the evaluate loop
        # Adapted to the executions per entity last seen; the first batch is small because nothing
        # is known yet about how many webhooks each entity fans out to.
        self._batch_size = FIRST_BATCH
        self._last_claim_size = FIRST_BATCH
        # What the last ingest folded, for the evaluator's sleep: seconds until the earliest due
        # time it wrote (inf: nothing new comes due), or None when it folded nothing here — then
        # another process may have, and the evaluator asks the database.
        self._fold_due_in_s: float | None = None
        self._due_hint: float | None = None  # loop time the folds since the last claim come due
        self._due_unknown = False  # a fold elsewhere (or none): the evaluator must look
        self._next_due_at: float | None = None  # loop time the entities the last claim left come due
        self.budgets = Budgets(Meter(), settings.evaluation_timeout_ms, settings.max_payload_bytes)
        self._ingest_linger_s = min(INGEST_LINGER_MAX_S, INGEST_LINGER_SHARE * settings.debounce_ms / 1000)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Ingesting and evaluating, as two loops: neither waits for the other's round trips, so
        an entity due now is not held up by the folding of the changes that keep arriving."""
        try:
            await asyncio.gather(self._ingest_loop(), self._evaluate_loop())
        finally:
            cancel_abandoned()

    async def _ingest_loop(self) -> None:
        # Ingest when a change was announced, when the last ingest left more, and on every sweep
        # (a lost notification).
        ingest_wanted, last_ingest = True, 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                sweep = not ingest_wanted and loop.time() - last_ingest >= SWEEP_INTERVAL_S
                if sweep and not await self._any_changes():
                    # A sweep that finds nothing (the usual case: no notification was lost) costs
                    # one statement and wakes no one: folds announced by a notification woke the
                    # evaluator then, and it looks for due entities at least every SWEEP_INTERVAL_S.
                    last_ingest = loop.time()
                elif ingest_wanted or sweep:
                    ingest_wanted, last_ingest = False, loop.time()
                    ingested = await self.ingest_once()
                    ingest_wanted = ingested == INGEST_BATCH
                    # New due times (here, or folded by another process's ingester): the
                    # evaluator recomputes when to wake — from what was folded here when it
                    # can, without a claim and a query that would only find nothing due yet.
                    if self._fold_due_in_s is None:
                        self._due_unknown = True
                    else:
                        hint = loop.time() + self._fold_due_in_s
                        self._due_hint = hint if self._due_hint is None else min(self._due_hint, hint)
                    self._ingested.set()
            except db.DB_UNAVAILABLE as exc:
                log.warning("producer: database unavailable (%s); retrying", exc)
                ingest_wanted = True
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            except Exception:  # a bug must not stop every delivery: the changes stay in their table
                log.exception("producer: ingest failed; retrying")
                ingest_wanted = True
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if ingest_wanted:
                continue  # more is waiting
            woken = await wait_any([self.wakeups.changes, self._stopping], SWEEP_INTERVAL_S)
            ingest_wanted = self.wakeups.changes in woken
            if ingest_wanted and self._ingest_linger_s:
                # Let the commits of the next moments join this ingest: one statement folds
                # them all, and an entity is due only a debounce after its change anyway.
                await asyncio.sleep(self._ingest_linger_s)
            self.wakeups.changes.clear()

    async def _any_changes(self) -> bool:
        async with self.pool.acquire() as conn:
            return await pending.any_changes(conn)

    async def _evaluate_loop(self) -> None:
        while not self._stopping.is_set():
            await self._paced()
            try:
                evaluated = await self.evaluate_once()
            except db.DB_UNAVAILABLE as exc:
                log.warning("producer: database unavailable (%s); retrying", exc)
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            except Exception:  # a bug or a poison entity must not stop every delivery; claims expire
                log.exception("producer: batch failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if evaluated and evaluated == self._last_claim_size:
                continue  # more is waiting
            await self._sleep_until_due()

    async def _paced(self) -> None:
        """Wait while delivery is the bottleneck (PACE_MAX_WAIT_S at most)."""
        if self.handoff is None:
            return
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + PACE_MAX_WAIT_S
        while self.handoff.saturated() and not self._stopping.is_set() and loop.time() < give_up_at:
            await self.handoff.room(PACE_CHECK_S)

    async def _sleep_until_due(self) -> None:
        """Sleep until the next entity is due: the last claim said when, and folds done here since
        can only bring that earlier (they say by how much); any other wake-up — a fold elsewhere,
        a sweep, an entity changed while it was evaluated — means looking again."""
        loop = asyncio.get_running_loop()
        if self._due_unknown:
            self._due_hint, self._due_unknown = None, False
            wake_at = loop.time() + await self._sleep_s()
        else:
            wake_at = loop.time() + SWEEP_INTERVAL_S
            if self._next_due_at is not None:
                wake_at = min(wake_at, max(loop.time(), self._next_due_at + DUE_PAD_S))
        while not self._stopping.is_set():
            woken = await wait_any([self._ingested, self._stopping], wake_at - loop.time())
            self._ingested.clear()
            if self._ingested not in woken or self._due_unknown:
                return
            if self._due_hint is not None:
                wake_at = min(wake_at, self._due_hint + DUE_PAD_S)
                self._due_hint = None
            if wake_at <= loop.time():
                return

    async def _sleep_s(self) -> float:
        try:
            async with self.pool.acquire() as conn:
                due = await pending.next_entity_due_in_s(conn)
        except Exception:  # only a hint for how long to sleep: poll soon instead
            return ERROR_BACKOFF_S
        if due is None:
            return SWEEP_INTERVAL_S
        return min(SWEEP_INTERVAL_S, max(0.0, float(due)) + DUE_PAD_S)

    async def ingest_once(self) -> int:
        """Fold up to INGEST_BATCH changes into pending_entities (one statement; one ingester at
        a time across processes: the others take nothing)."""
        async with self.pool.acquire() as conn:
            done = await pending.ingest(conn, INGEST_BATCH, self.settings.debounce_ms, self.settings.max_delay_ms)
        if not done.taken:
            self._fold_due_in_s = None
        else:
            self._fold_due_in_s = float("inf") if done.next_due_in_s is None else done.next_due_in_s
        return done.taken

    async def evaluate_once(self) -> int:
        loop = asyncio.get_running_loop()
        # What is folded from here on is news to the sleep after this batch (`_sleep_until_due`);
        # what was folded before, the claim sees.
        self._due_hint, self._due_unknown = None, False
        async with self.pool.acquire() as conn:
            self._last_claim_size = self._batch_size
            claim = await pending.claim_due(conn, self._batch_size, CLAIM_LEASE_S)
        self._next_due_at = None if claim.next_due_in_s is None else loop.time() + claim.next_due_in_s
        if not claim.entities:
            return 0
        due = [Due.from_row(r) for r in claim.entities]
        webhooks = claim.webhooks
        try:
            await self._enqueue(due, webhooks, await self._evaluate(due, webhooks))
        except Exception:
            # Give the entities back now rather than when the lease expires; then let run() log it.
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await pending.release_claims(conn, [d.key[0] for d in due], [d.key[1] for d in due])
            raise
        return len(due)

    async def _evaluate(
        self, due: list[Due], webhooks: list[SubscribedWebhook]
    ) -> dict[tuple[int, str, int], Encoded | Breach | Filtered]:
        """Payload per (webhook id, entity type, entity id), encoded — or the budget it breached
        (app.evaluation.execute: time per run of a group, size per payload), or, when the
        webhook's filter does not match the payload, that payload `Filtered`. The queries of one (entity
        type, visibility) run merged, once per entity (app.evaluation.merge); one context (one set of
        DataLoaders) per visibility, so groups find rows in the loaders' caches."""
        # (entity type, owner) → query → (its webhooks, the entities any of them wants)
        groups: dict[tuple[EntityType, int | None], dict[CompiledQuery, list[SubscribedWebhook]]] = defaultdict(dict)
        entities: dict[tuple[EntityType, int | None], dict[tuple[str, int], Due]] = defaultdict(dict)
        wanted: dict[int, list[Due]] = {}
        for hook in webhooks:
            entity_type = EntityType(hook.entity_type)
            compiled = compile_query(self.schema, hook.query, entity_type)
            if isinstance(compiled, QueryError):  # stored queries were validated; a schema change may break one
                log.error("webhook %s: its query no longer compiles: %s", hook.id, compiled.message)
                continue
            visibility = Visibility(hook.seller_id)
            mine = [
                d
                for d in due
                if d.entity_type is entity_type and d.action.value in hook.events and visibility.may_see(d.seller_id)
            ]
            if mine:
                group = (entity_type, hook.seller_id)
                groups[group].setdefault(compiled, []).append(hook)
                entities[group].update((d.key, d) for d in mine)
                wanted[hook.id] = mine
        contexts: dict[int | None, Any] = {}
        for _, seller in groups:
            if seller not in contexts:
                contexts[seller] = self.make_context(self.pool, Visibility(seller), self.settings)
        group_list = [(group, list(entities[group].values()), by_query) for group, by_query in groups.items()]
        # All groups at once: each waits on its loaders' round trips (a nested query is 3-4 waves
        # of them), so one after another a batch's latency would be their sum. Memory is bounded
        # by the batch size (EVENTS_PER_BATCH), not by running them together.
        # Each group breaches alone: its outcomes say so, and the others' are unaffected.
        # Compiled (HOOKQL_COMPILED_QUERIES): one statement per group; what does not compile, and
        # everything when the setting is off, through graphql-core. Equal payloads either way.
        results = await asyncio.gather(
            *(
                evaluate_group(
                    self.pool,
                    self.schema,
                    contexts[group[1]],
                    list(by_query),
                    [d.entity_id for d in members],
                    [d.global_id for d in members],
                    group[1],
                    self.budgets,
                )
                if self.settings.compiled_queries
                else evaluate_many(
                    self.schema, contexts[group[1]], list(by_query), [d.global_id for d in members], self.budgets
                )
                for group, members, by_query in group_list
            )
        )
        out: dict[tuple[int, str, int], Encoded | Breach | Filtered] = {}
        # Webhooks sharing a query share one payload object: encode, measure and hash each once.
        encoded: dict[int, Encoded | Breach] = {}
        for (_, members, by_query), outcomes in zip(group_list, results, strict=True):
            for compiled, hooks in by_query.items():
                by_entity = dict(zip((d.key for d in members), outcomes[compiled], strict=True))
                root = entity_root(compiled.entity_type.graphql_name)
                for hook in hooks:
                    condition = _condition(hook.filter) if hook.filter else None
                    for d in wanted[hook.id]:
                        outcome = by_entity[d.key]
                        if isinstance(outcome, Breach):
                            out[(hook.id, *d.key)] = outcome
                            continue
                        if id(outcome) not in encoded:
                            encoded[id(outcome)] = encode_within(outcome, self.budgets.payload_bytes)
                        result = encoded[id(outcome)]
                        # Filtered after evaluation and its budgets, before skip-identical (_enqueue).
                        if condition is not None and isinstance(result, Encoded) and not matches(
                            condition, outcome, root
                        ):
                            out[(hook.id, *d.key)] = Filtered(result)
                        else:
                            out[(hook.id, *d.key)] = result
        events_per_entity = max(1.0, len(out) / len(due))
        executions_per_entity = max(1.0, sum(len(members) for _, members, _ in group_list) / len(due))
        self._batch_size = max(
            1,
            min(
                EVALUATE_BATCH,
                int(EVENTS_PER_BATCH / events_per_entity),
                int(EXECUTIONS_PER_BATCH / executions_per_entity),
            ),
        )
        return out

    async def _enqueue(
        self,
        due: list[Due],
        webhooks: list[SubscribedWebhook],
        payloads: dict[tuple[int, str, int], Encoded | Breach | Filtered],
    ) -> None:
        skip_identical = {h.id: h.skip_identical_payloads for h in webhooks}
        breach_streaks = {h.id: h.budget_breaches for h in webhooks}
        by_key = {d.key: d for d in due}
        handoff = self.handoff
        # Webhooks sharing a query share one payload: its hash was computed once (`_evaluate`).
        candidates = [
            enqueue.Candidate(*k, "filtered", None, False) if isinstance(o, Filtered)
            else enqueue.Candidate(*k, "breach", None, False) if isinstance(o, Breach)
            else enqueue.Candidate(*k, "payload", o.hash, skip_identical[k[0]])
            for k, o in sorted(payloads.items())
        ]
        claimed = [enqueue.ClaimedVersion(*d.key, d.version, d.action.value) for d in due]
        async with self.pool.acquire() as conn, conn.transaction():
            # Every webhook with a payload is locked, also those whose entities turn out not to be
            # sendable: the statement judges the entities (`enqueue.Verdict`) and reserves the
            # sequence numbers of what is sent, superseding what it replaces, in one round trip.
            prep = await enqueue.prepare_enqueue(conn, claimed, list({k[0] for k in payloads}), candidates)
            verdicts = {v.key: v for v in prep.verdicts}
            done = {k for k, v in verdicts.items() if v.verdict == "done"}
            moved = {k for k, v in verdicts.items() if v.verdict != "done"}
            sendable = {k for k, v in verdicts.items() if v.sendable}
            alive = {w.id for w in prep.webhooks}  # a webhook deleted since the claim gets nothing
            outputs = {k: p for k, p in payloads.items() if (k[1], k[2]) in sendable and k[0] in alive}
            config: dict[int, enqueue.HandoffWebhook] = {w.id: w for w in prep.webhooks} if handoff is not None else {}
            # A breach is an event like any other — it takes the next sequence number — but it
            # is recorded FAILED, with its error, and never sent: nothing to skip or supersede.
            breaches = {k: o for k, o in outputs.items() if isinstance(o, Breach)}
            encoded = {k: o for k, o in outputs.items() if isinstance(o, Encoded)}
            # A payload the filter did not match is recorded SKIPPED ('filtered'): it takes no
            # sequence number, supersedes nothing and leaves the skip-identical hash alone (that
            # stays the hash of the last payload enqueued for the receiver).
            filtered = {k: o.encoded for k, o in outputs.items() if isinstance(o, Filtered)}
            texts = {k: o.text for k, o in encoded.items()}
            hashes = {k: o.hash for k, o in encoded.items()}
            counts: dict[int, int] = defaultdict(int)
            for k in outputs:
                if k not in filtered:
                    counts[k[0]] += 1
            if counts != prep.reserved:  # the statement and this code count the same candidates
                raise RuntimeError(f"enqueue: reserved {prep.reserved} sequence numbers for {dict(counts)}")
            firsts, previous, superseded = prep.firsts, prep.previous_hashes, prep.superseded
            skipped = {
                c[:3] for c in candidates if c.kind == "payload" and c[:3] in encoded
                and enqueue.is_skipped(c, previous.get(c[:3]))
            }
            hashed = [k for k in encoded if k not in skipped]  # the hashes later payloads compare with
            clocks = {c.key: c for c in superseded}
            # Events this process may send at once (handoff): within the webhook's claim-ahead
            # budget and the dispatcher's room, and not in a retry backoff inherited from the
            # event they supersede (`enqueue.may_hand_off`). Within its owner's share of held
            # events too (app.policy.lanes).
            room = {w: handoff.budget(c) for w, c in config.items() if c.enabled} if handoff else {}
            owner_of = {w: c.seller_id for w, c in config.items()}
            owner_room = {c.seller_id: handoff.owner_budget(c) for c in config.values()} if handoff else {}
            capacity = handoff.capacity() if handoff else 0
            rows: list[enqueue.NewEvent] = []
            failed: list[budget_breaches.FailedEvaluation] = []
            next_seq = dict(firsts)
            for k in sorted(outputs, key=lambda k: (k[0], k[1], k[2])):
                d = by_key[(k[1], k[2])]
                if k in filtered:
                    rows.append(
                        enqueue.NewEvent(
                            new_event_id(), k[0], k[1], k[2], event_name(d.entity_type, d.action.value), None,
                            "skipped", filtered[k].text, filtered[k].hash, d.last_change_at, 0, None, True, False,
                            "filtered",
                        )
                    )
                    continue
                seq = next_seq[k[0]]
                next_seq[k[0]] = seq + 1
                if k in breaches:
                    failed.append(_failed_evaluation(k, d, seq, breaches[k]))
                    continue
                name = event_name(d.entity_type, d.action.value)
                if k in skipped:
                    rows.append(
                        enqueue.NewEvent(
                            new_event_id(), k[0], k[1], k[2], name, seq, "skipped", texts[k], hashes[k],
                            d.last_change_at, 0, None, True, False, "identical",
                        )
                    )
                    continue
                clock = clocks.get(k)
                leased = (
                    capacity > 0
                    and room.get(k[0], 0) > 0
                    and owner_room[owner_of[k[0]]] > 0
                    and enqueue.may_hand_off(clock)
                )
                if leased:
                    capacity -= 1
                    room[k[0]] -= 1
                    owner_room[owner_of[k[0]]] -= 1
                rows.append(
                    enqueue.pending_event(
                        public_id=new_event_id(),
                        webhook_id=k[0],
                        entity_type=k[1],
                        entity_id=k[2],
                        event=name,
                        sequence=seq,
                        payload=texts[k],
                        payload_hash=hashes[k],
                        changed_at=d.last_change_at,
                        clock=clock,
                        leased=leased,
                    )
                )
            # A moved entity's remaining changes all came after the state claimed: its max delay
            # counts from there, or a steadily changing entity would be due again at once, forever.
            lasts = {k: v.last_change_at for k, v in verdicts.items()}
            restarted = [
                (
                    *k,
                    by_key[k].last_change_at,
                    due_at(by_key[k].last_change_at, lasts[k], self.settings.debounce_ms, self.settings.max_delay_ms),
                )
                for k in moved
            ]
            if restarted:  # due again at times the claim did not see: the evaluator looks
                self._due_unknown = True
            leased_ids = await enqueue.finish_enqueue(
                conn,
                rows,
                handoff.lease_s if handoff else 0.0,
                [c.id for c in superseded],
                [(k[0], k[1], k[2], hashes[k]) for k in hashed],
                list(done),
                restarted,
            )
            handed = [
                _delivery_row(e, leased_ids[e.public_id], config[e.webhook_id])
                for e in rows
                if e.public_id in leased_ids
            ]
            streaks = _budget_streaks(breaches, {k[0] for k in encoded} | {k[0] for k in filtered}, breach_streaks)
            if failed or streaks:
                disabled = await budget_breaches.record_budget_outcomes(
                    conn, failed, streaks, self.settings.budget_breaches_to_disable
                )
                for webhook_id, reason in disabled:
                    log.warning("webhook %s disabled: %s", webhook_id, reason)
        if handed and handoff is not None:  # committed: theirs to send
            handoff.accept(handed)


def _failed_evaluation(
    k: tuple[int, str, int], d: Due, sequence: int, breach: Breach
) -> budget_breaches.FailedEvaluation:
    # What the event log shows as its payload: the error, shaped as a GraphQL result.
    payload = encode_payload({"data": None, "errors": [{"message": breach.error}]})
    return budget_breaches.FailedEvaluation(
        public_id=new_event_id(),
        webhook_id=k[0],
        entity_type=k[1],
        entity_id=k[2],
        event=event_name(d.entity_type, d.action.value),
        sequence=sequence,
        payload=payload,
        payload_hash=payload_hash(payload),
        changed_at=d.last_change_at,
        reason=breach.reason,
        error=breach.error,
    )


def _budget_streaks(
    breaches: Mapping[tuple[int, str, int], Breach], succeeded: set[int], streaks: Mapping[int, int]
) -> list[budget_breaches.BudgetStreak]:
    """What this batch does to each webhook's run of consecutive budget breaches: a webhook that
    breached on any entity extends it (once per batch: one breaching run fails many entities);
    one that only succeeded ends it, if it had one (as read with the webhooks; the statement
    checks again)."""
    last: dict[int, Breach] = {}
    for k, breach in sorted(breaches.items()):
        if k[0] not in last or (breach.evaluated and not last[k[0]].evaluated):
            last[k[0]] = breach
    ended = sorted(w for w in succeeded - last.keys() if streaks.get(w, 0) > 0)
    return [budget_breaches.BudgetStreak(w, breach.error) for w, breach in sorted(last.items())] + [
        budget_breaches.BudgetStreak(w, None) for w in ended
    ]


def _delivery_row(event: enqueue.NewEvent, event_id: int, webhook: enqueue.HandoffWebhook) -> delivery.ClaimedEvent:
    """An event inserted leased, as a claim returns one (a pending event: it has a sequence)."""
    assert event.sequence is not None
    return delivery.ClaimedEvent(
        id=event_id,
        public_id=event.public_id,
        webhook_id=event.webhook_id,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        event=event.event,
        sequence=event.sequence,
        payload=event.payload,
        changed_at=event.changed_at,
        attempts=event.attempts,
        **webhook.delivery,
    )
