"""From captured changes to webhook events, as two loops: ingesting folds bursts of changes per
entity (`pending_entities`), and evaluating claims the entities whose debounce has passed, runs
their webhooks' queries (app.engine.batch) and enqueues the outcomes (app.engine.enqueue),
paced by what delivery takes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from app.config import Settings
from app.engine.batch import Batch, Due, Outcome
from app.engine.enqueue import Handoff, enqueue_batch
from app.engine.wakeups import Wakeups, wait_any
from app.evaluation.budgets import Meter
from app.evaluation.execute import Budgets, cancel_abandoned
from app.store import db, pending
from app.store.pending import SubscribedWebhook

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
# A batch's groups finish at their own pace (app.engine.batch). The entities whose groups have all
# finished STRAGGLER_S after the first group did are enqueued then, and the evaluator goes on to
# the next batch; the rest are enqueued in the background when their groups finish. A batch none
# of whose groups finished within FIRST_GROUP_S goes to the background whole. So one owner's
# costly query — up to its evaluation budget, and once more query by query when the compiled
# statement runs over (app.engine.compiled) — delays that owner's entities, not the batch and the
# batches after it, even when the batch holds nothing else. Usually every group is done within
# the wait: one enqueue per batch, as before.
STRAGGLER_S = 0.1
FIRST_GROUP_S = 0.25
# Batches finishing in the background at once. From MAX_STRAGGLERS on, the evaluator's claims
# pass over the owners whose entities those batches still evaluate: one owner's costly queries,
# each up to its budget (and once more, query by query, app.engine.compiled), hold back that
# owner's changes, not everyone's (a neighbour's delivery waited up to a second for a legacy
# query's batches in the bench's noisy-neighbour scenario). Claims that find only those owners'
# entities due wait for one of the batches, or for new changes. At MAX_STRAGGLERS_TOTAL the
# evaluator waits for one before claiming again: their groups hold pool connections.
MAX_STRAGGLERS = 2
MAX_STRAGGLERS_TOTAL = 4


def next_batch_size(batch: Batch, claimed: int) -> int:
    """The next claim's size, from the fan-out this batch showed: within EVALUATE_BATCH entities,
    about EVENTS_PER_BATCH events and about EXECUTIONS_PER_BATCH group runs per entity."""
    events_per_entity = max(1.0, batch.events / claimed)
    executions_per_entity = max(1.0, batch.executions / claimed)
    return max(
        1,
        min(
            EVALUATE_BATCH,
            int(EVENTS_PER_BATCH / events_per_entity),
            int(EXECUTIONS_PER_BATCH / executions_per_entity),
        ),
    )


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
        # batches whose last groups are still running, by the task finishing them
        self._stragglers: dict[asyncio.Task[None], Batch] = {}
        self._ingest_linger_s = min(INGEST_LINGER_MAX_S, INGEST_LINGER_SHARE * settings.debounce_ms / 1000)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Ingesting and evaluating, as two loops: neither waits for the other's round trips, so
        an entity due now is not held up by the folding of the changes that keep arriving."""
        try:
            await asyncio.gather(self._ingest_loop(), self._evaluate_loop())
            if self._stragglers:  # their entities are claimed: enqueue them rather than wait out the lease
                await asyncio.wait(self._stragglers)
        finally:
            for task in self._stragglers:
                task.cancel()
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
        if len(self._stragglers) >= MAX_STRAGGLERS_TOTAL:  # their groups hold pool connections
            await asyncio.wait(self._stragglers, return_when=asyncio.FIRST_COMPLETED)
        skip = self._straggling_owners() if len(self._stragglers) >= MAX_STRAGGLERS else []
        # What is folded from here on is news to the sleep after this batch (`_sleep_until_due`);
        # what was folded before, the claim sees.
        self._due_hint, self._due_unknown = None, False
        async with self.pool.acquire() as conn:
            self._last_claim_size = self._batch_size
            claim = await pending.claim_due(conn, self._batch_size, CLAIM_LEASE_S, skip)
        self._next_due_at = None if claim.next_due_in_s is None else loop.time() + claim.next_due_in_s
        if self.handoff is not None:
            self.handoff.owners_subscribed(claim.owners)
        if not claim.entities:
            if skip:  # what is due is the straggling owners': wait for one of their batches, or news
                await self._straggler_or_news()
            return 0
        due = [Due.from_row(r) for r in claim.entities]
        webhooks = claim.webhooks
        batch = self.start_batch(due, webhooks)
        self._batch_size = next_batch_size(batch, len(due))
        try:
            ready = await batch.wait_ready(STRAGGLER_S, FIRST_GROUP_S)
            if ready:
                await self._enqueue(ready, webhooks, batch.outcomes(ready))
        except Exception:
            batch.cancel()
            await self._release(due)  # all of them: none of the rest is enqueued either
            raise
        if not batch.finished:
            enqueued = {d.key for d in ready}
            task = asyncio.create_task(self._finish(batch, webhooks, enqueued), name="hookql-straggler")
            self._stragglers[task] = batch
            task.add_done_callback(lambda t: self._stragglers.pop(t, None))
        return len(due)

    def _straggling_owners(self) -> list[int]:
        return sorted({owner for batch in self._stragglers.values() for owner in batch.owners_waiting()})

    async def _straggler_or_news(self) -> None:
        """Until a background batch finishes, something was ingested, or SWEEP_INTERVAL_S passed."""
        if not self._stragglers:  # they finished meanwhile: their owners' entities are claimable
            return
        news = asyncio.ensure_future(self._ingested.wait())
        try:
            await asyncio.wait([*self._stragglers, news], timeout=SWEEP_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            news.cancel()

    def start_batch(self, due: list[Due], webhooks: list[SubscribedWebhook]) -> Batch:
        """The evaluation of these claimed entities, its groups running (app.engine.batch)."""
        return Batch(due, webhooks, pool=self.pool, schema=self.schema, make_context=self.make_context,
                     settings=self.settings, budgets=self.budgets)

    async def _finish(self, batch: Batch, webhooks: list[SubscribedWebhook], enqueued: set[tuple[str, int]]) -> None:
        """Enqueue the entities of a batch's straggling groups as those finish — the entities whose
        groups are all done, STRAGGLER_S after each group that finishes, so a fast group of a batch
        that went to the background whole does not wait for its slowest (their own evaluation
        budgets bound the waits); on failure give back those not enqueued, as a batch would."""
        try:
            async for ready in batch.as_ready(STRAGGLER_S):
                if ready:
                    await self._enqueue(ready, webhooks, batch.outcomes(ready))
                    enqueued.update(d.key for d in ready)
        except asyncio.CancelledError:
            batch.cancel()
            raise
        except Exception as exc:
            await self._release([d for d in batch.due if d.key not in enqueued])
            if isinstance(exc, db.DB_UNAVAILABLE):
                log.warning("producer: database unavailable (%s) enqueueing a batch's last groups", exc)
            else:
                log.exception("producer: enqueueing a batch's last groups failed; their entities are given back")

    async def _release(self, due: list[Due]) -> None:
        """Give claimed entities back now rather than when their lease expires."""
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn:
                await pending.release_claims(conn, [d.key[0] for d in due], [d.key[1] for d in due])

    async def _enqueue(
        self, due: list[Due], webhooks: list[SubscribedWebhook], payloads: dict[tuple[int, str, int], Outcome]
    ) -> None:
        if await enqueue_batch(self.pool, self.settings, self.handoff, due, webhooks, payloads):
            self._due_unknown = True  # due again at times the claim did not see: the evaluator looks
