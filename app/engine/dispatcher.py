"""Delivery: claim due events (per-webhook concurrency, one in flight per (webhook, entity)),
send each through the transport, record every attempt and decide what happens next.

A claim may lease up to CLAIM_AHEAD × a webhook's live concurrency of its events; this process
then sends at most live-concurrency of them at a time (a lane per webhook) and keeps the leases
of the rest alive (renew_loop) until their turn. Leases held count against the webhook's
concurrency in every process's claim, so the limit holds across processes, and a busy webhook
costs one claim per CLAIM_AHEAD rounds of attempts instead of one per round. Only healthy
webhooks are claimed ahead: a failing one gets one round at a time, so a fixed URL is used by
its very next attempt. Attempts waiting in a lane use the configuration read at their claim.

Events this process's producer just enqueued skip the claim: they are inserted leased to this
process and handed over (`accept`, app.engine.enqueue.Handoff) within the same budget, so a claim is
needed only for what was left to one — announced by NOTIFY.

Send slots and held events are shared fairly by owner (a seller, or the operator): the rule is
in app.policy.lanes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg

from app.config import Settings
from app.engine.wakeups import Wakeups, wait_any
from app.policy.lanes import Lanes, handoff_budget, owner_handoff_budget, owner_max_held
from app.policy.pacing import Backlog, recording_share
from app.policy.retry import FAILING_DISABLE_AFTER_S, Outcome, classify
from app.store import db, delivery
from app.store.attempts import outgoing_for, plan_outcomes
from app.store.delivery import ClaimedEvent
from app.store.enqueue import HandoffWebhook
from app.transport.http import Transport
from app.types import SendResult

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256  # attempts this process sends at once, over all owners (settings.owner_max_sending each)
MAX_HELD = 2048  # events this process holds leased and not yet recorded (sending or waiting)
# Events handed over by the producer as it enqueues them fill at most this many of those: claims
# always have room left, so a backlog of older events is never starved by fresh ones.
HANDOFF_HELD = MAX_HELD // 2
CLAIM_AHEAD = 25  # a claim leases up to this many × a webhook's live concurrency
# Due events a claim looks at, shared equally among the webhooks that have room for more (each
# webhook's earliest due first): every webhook is looked at, however many another has due.
CLAIM_SCAN_LIMIT = 5000
LEASE_S = 20.0  # a claim's lease: a crashed process's events are claimable again within this
RENEW_EVERY_S = 5.0  # held leases (waiting, sending, unrecorded) are extended to LEASE_S this often
RECORD_BATCH = 500  # attempt results recorded per transaction
# Claims woken together share one query: small against the latency budget.
CLAIM_LINGER_S = 0.002
# Results arriving while attempts are still in flight, up to this long after the first, share one
# statement; with none in flight, or a whole batch waiting, a batch is recorded at once. Recording
# happens after the receiver has its request, so this delays only the release of leases, not
# deliveries.
RECORD_LINGER_S = 0.2
POLL_INTERVAL_S = 1.0
PRUNE_INTERVAL_S = 60.0
PRUNE_BATCH = 5000
ERROR_BACKOFF_S = 1.0
STOP_RECORD_GRACE_S = 1.0  # `stop` waits this much past its bound for outcomes being recorded
_DB_ERRORS = db.DB_UNAVAILABLE


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        transport: Transport,
        wakeups: Wakeups,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.transport = transport
        self.wakeups = wakeups
        self.rand = rand
        self._results: asyncio.Queue[tuple[ClaimedEvent, SendResult]] = asyncio.Queue()
        self._sending: set[asyncio.Task[None]] = set()
        self._unrecorded: dict[int, ClaimedEvent] = {}  # claimed (leased) and not yet recorded
        self._finished: set[int] = set()  # sent, waiting to be recorded: no longer a busy slot
        self._lanes: Lanes[ClaimedEvent] = Lanes(MAX_IN_FLIGHT, settings.owner_max_sending)  # app.policy.lanes
        self._unsent: list[int] = []  # held events dropped unsent; the recorder gives back their leases
        self.renew_every_s = RENEW_EVERY_S
        # When to claim again. A claim finds everything due that it may lease, so another one is
        # worth its 4 statements only when something changed: events announced (NOTIFY: enqueued
        # and not handed off, or made claimable by a recorded outcome), a lane that took its full
        # claim-ahead budget down to its last round (`_more`: it may have more due), a claim put
        # off because this process was full (`_claim_put_off`), or a retry newly scheduled.
        self._slot_freed = asyncio.Event()
        self._more: set[int] = set()
        self._claim_put_off = False
        self._stopping = asyncio.Event()
        self._recorded = asyncio.Event()  # set by the recorder after each batch: `stop` waits on it
        self._all_sent = asyncio.Event()  # set when no attempt is in flight: the recorder waits on it
        self._room = asyncio.Event()  # set when it stops being saturated: the producer waits on it
        # Outcomes sent and not yet recorded (queued, or in the batch being recorded), by owner.
        share = recording_share(RECORD_BATCH, settings.owner_max_sending, MAX_IN_FLIGHT)
        self._backlog = Backlog(RECORD_BATCH, share)

    # -- hand-off from the producer (app.engine.enqueue.Handoff) ---------------------------------------

    lease_s = LEASE_S

    def capacity(self) -> int:
        return 0 if self._stopping.is_set() else max(0, HANDOFF_HELD - len(self._unrecorded))

    def budget(self, webhook: HandoffWebhook) -> int:
        return handoff_budget(webhook.live_concurrency, webhook.leased, webhook.failing_since is not None, CLAIM_AHEAD)

    def owner_budget(self, webhook: HandoffWebhook) -> int:
        return owner_handoff_budget(self.settings.owner_max_sending, webhook.owner_leased)

    def saturated(self) -> bool:
        """More work would only wait: every send slot is taken with attempts waiting for one, or
        the recorder is a batch or more behind the attempts that finished — neither counting an
        owner beyond its share, so that no owner alone makes it so (app.policy.pacing)."""
        return self._lanes.saturated() or self._backlog.behind()

    @property
    def recording_backlog(self) -> int:
        """Attempts sent and not yet recorded, over all owners."""
        return len(self._backlog)

    def owners_subscribed(self, owners: int) -> None:
        self._backlog.among(owners)
        if not self.saturated():
            self._room.set()

    async def room(self, timeout_s: float) -> None:
        """Until it is no longer saturated, or `timeout_s` passed."""
        if not self.saturated():
            return
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._room.wait()

    def accept(self, rows: list[ClaimedEvent]) -> None:
        """Events the producer committed leased to this process: sent like claimed ones."""
        if self._stopping.is_set():  # too late to send: give their leases back
            self._unsent.extend(row.id for row in rows)
            task = asyncio.create_task(self._give_back_unsent(), name="hookql-give-back")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return
        self._hold(rows)

    def _hold(self, rows: list[ClaimedEvent]) -> None:
        for row in rows:
            if row.id in self._unrecorded:
                # Its lease ran out while we held it (renewals failed: database away); we still
                # hold it, and the lease is ours again.
                continue
            self._unrecorded[row.id] = row
            self._lanes.add(row, row.live_concurrency, row.seller_id, row.failing_since is not None)
        self._start_waiting()

    # -- claiming and sending ------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Finished-but-unrecorded attempts still hold rows here: the recorder falling behind must
            # slow claiming down, or held rows (payloads included) would grow without bound.
            free = MAX_HELD - len(self._unrecorded)
            claimed: list[ClaimedEvent] = []
            self._claim_put_off = not (free > 0 and self._lanes.sending < MAX_IN_FLIGHT)
            if not self._claim_put_off:
                try:
                    async with self.pool.acquire() as conn:
                        claimed = await delivery.claim_events(
                            conn, free, LEASE_S, CLAIM_SCAN_LIMIT, list(self._finished), CLAIM_AHEAD,
                            owner_max_held(self.settings.owner_max_sending),
                        )
                except _DB_ERRORS as exc:
                    log.warning("dispatcher: database unavailable (%s); retrying", exc)
                    await asyncio.sleep(ERROR_BACKOFF_S)
                    continue
                except Exception:  # e.g. a connection broken mid-protocol: retry rather than stop sending
                    log.exception("dispatcher: claim failed; retrying")
                    await asyncio.sleep(ERROR_BACKOFF_S)
                    continue
            self._hold(claimed)
            self._more = {
                w for w in self._more | {row.webhook_id for row in claimed}
                if self._lanes.limit(w) and self._lanes.held(w) >= self._lanes.limit(w) * CLAIM_AHEAD
            }
            if claimed and len(claimed) == free:
                continue
            # With attempts held, their outcomes wake us (see `_slot_freed`); with none, the next
            # retry's due time bounds the sleep.
            sleep_s = POLL_INTERVAL_S if self._unrecorded else await self._sleep_s()
            while not await wait_any([self.wakeups.events, self._slot_freed, self._stopping], sleep_s):
                # Slept the whole poll interval: only a lost NOTIFY would have left anything to
                # claim. Whether anything is due takes one statement, a claim four.
                due_s = await self._due_s()
                if due_s is not None and due_s <= 0:
                    break
                sleep_s = POLL_INTERVAL_S if due_s is None else min(POLL_INTERVAL_S, due_s + 0.001)
            self.wakeups.events.clear()
            self._slot_freed.clear()
            await asyncio.sleep(CLAIM_LINGER_S)

    def _start_waiting(self) -> None:
        """Send the attempts whose turn it is (app.policy.lanes). None once stopping: `stop` waits
        only for the sends it found, and the transport closes after it; the attempts left waiting
        stay unrecorded, and `stop` gives their leases back."""
        if self._stopping.is_set():
            return
        for row in self._lanes.take():
            task = asyncio.create_task(self._send(row), name=f"send-{row.public_id}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, row: ClaimedEvent) -> None:
        webhook_id = row.webhook_id
        try:
            result = await self.transport.send(outgoing_for(row, self.settings, datetime.now(UTC)))
        finally:
            self._lanes.done(webhook_id)
        # The webhook's other waiting attempts follow this outcome at once, before it is recorded.
        outcome = classify(result)
        self._lanes.outcome(webhook_id, outcome is Outcome.DELIVERED)
        if outcome is Outcome.GONE:
            self._forget(self._lanes.drop(webhooks={webhook_id}))
        elif outcome is Outcome.RATE_LIMITED:
            self._lanes.halve(webhook_id)
        self._finished.add(row.id)
        # Top a lane up only when it is down to its last round: topping it up after every
        # attempt would cost a claim (4 statements) per attempt.
        if self._claim_put_off or (
            webhook_id in self._more and self._lanes.waiting(webhook_id) < max(1, self._lanes.limit(webhook_id))
        ):
            self._slot_freed.set()
        self._backlog.add(row.seller_id)
        await self._results.put((row, result))
        self._start_waiting()
        if not self.saturated():
            self._room.set()
        if not self._lanes.sending:
            self._all_sent.set()

    def _forget(self, event_ids: list[int]) -> None:
        """Held events dropped unsent: no longer ours; the recorder gives back their leases."""
        for event_id in event_ids:
            self._unrecorded.pop(event_id, None)
        self._unsent.extend(event_ids)

    async def renew_loop(self) -> None:
        """Keep the leases of held events alive while they wait for their turn or their recording;
        a crashed process stops renewing and its leases expire."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            held = list(self._unrecorded)
            if not held:
                continue
            try:
                async with self.pool.acquire() as conn:
                    gone = await delivery.renew_leases(conn, held, LEASE_S)
            except Exception as exc:  # the next round tries again; a lease outlives several rounds
                log.warning("dispatcher: renewing %d leases failed (%s)", len(held), exc)
                continue
            # Events no longer claimable (cancelled, webhook disabled or deleted): do not send them.
            self._forget(self._lanes.drop(events=set(gone)))
            await self._give_back_unsent()

    async def _give_back_unsent(self) -> None:
        """Release the leases of held events dropped unsent, so their next attempt need not wait
        for the lease to expire. Never raises: after a failure the leases simply expire."""
        if not self._unsent:
            return
        unsent, self._unsent = self._unsent, []
        try:
            async with self.pool.acquire() as conn:
                await delivery.release_leases(conn, unsent)
        except Exception as exc:
            log.warning("dispatcher: giving back %d leases failed (%s); they expire instead", len(unsent), exc)

    async def _sleep_s(self) -> float:
        """How long to sleep after a claim took all it could."""
        due = await self._due_s()
        if due is None or due <= 0:  # nothing due, or due but blocked: a recorded attempt wakes us
            return POLL_INTERVAL_S
        return min(POLL_INTERVAL_S, due + 0.001)

    async def _due_s(self) -> float | None:
        """Seconds until the next unleased event is due (≤ 0: due now), None when none is
        pending; 0 when the database cannot say (then a claim finds out)."""
        try:
            async with self.pool.acquire() as conn:
                return await delivery.next_event_due_in_s(conn)
        except Exception:  # only a hint: claim (and back off, if the database is away) instead
            return 0.0

    # -- recording -----------------------------------------------------------------------------

    async def record_loop(self) -> None:
        while True:
            batch = [await self._results.get()]
            # More outcomes on the way join this batch, unless a whole batch is waiting already:
            # then lingering would only let the recorder fall behind.
            if self._lanes.sending and self._results.qsize() < RECORD_BATCH - 1:
                self._all_sent.clear()
                await wait_any([self._all_sent], RECORD_LINGER_S)
            while len(batch) < RECORD_BATCH and not self._results.empty():
                batch.append(self._results.get_nowait())
            retrying = await self._record(batch)
            if not self.saturated():
                self._room.set()
            self._recorded.set()
            # Room freed for a claim put off, or a retry scheduled: the claim loop recomputes
            # when to wake (other outcomes wake it by NOTIFY when they leave events claimable).
            if self._claim_put_off or retrying:
                self._slot_freed.set()

    async def _until_done(self, what: str, op: Callable[[], Awaitable[T]], retry: bool) -> T:
        """Run one recording transaction, again and again until it commits (`retry`): outcomes are
        never dropped, and the leases hold the events meanwhile."""
        while True:
            try:
                return await op()
            except _DB_ERRORS as exc:
                if not retry:
                    raise
                log.warning("dispatcher: cannot record %s (%s); retrying", what, exc)
            except Exception:  # e.g. a connection broken mid-protocol: keep the results and retry
                if not retry:
                    raise
                log.exception("dispatcher: recording %s failed; retrying", what)
            await asyncio.sleep(ERROR_BACKOFF_S)

    async def _record(self, batch: list[tuple[ClaimedEvent, SendResult]], *, retry: bool = True) -> bool:
        """Record a batch of outcomes; True when it scheduled a retry."""
        planned = plan_outcomes(batch, datetime.now(UTC), self.settings, self.rand)
        attempts, events, failed_pairs, per_hook = (
            planned.attempts, planned.events, planned.failed_pairs, planned.per_hook
        )
        # A webhook whose outcomes were all successes, already at full concurrency and not failing
        # (as its claim saw it), has no health to update: a busy, healthy webhook then costs no
        # second transaction. A stale view only delays a raise of live concurrency to the next batch.
        unsettled = {
            row.webhook_id
            for row, _ in batch
            if row.live_concurrency < row.concurrency or row.failing_since is not None
        }
        settled = set(per_hook) - unsettled
        hooks = {hid: c for hid, c in per_hook.items() if not (hid in settled and c.only_delivered())}

        # Two transactions: the attempts and event outcomes first, in one statement holding no
        # webhook row for update (enqueueing locks those for its whole transaction: holding them
        # here would make each wait for the other); then the webhooks' health, briefly under their
        # locks. A crash between the two loses only health counters, which the next outcomes set again.
        async def attempts_tx() -> None:
            async with self.pool.acquire() as conn:
                await delivery.record_attempts(conn, attempts, events, list(per_hook))

        async def health_tx() -> list[delivery.WebhookState]:
            async with self.pool.acquire() as conn, conn.transaction():
                return await delivery.record_webhook_health(conn, hooks, failed_pairs, FAILING_DISABLE_AFTER_S)

        await self._until_done(f"{len(batch)} attempts", attempts_tx, retry)
        for row, _ in batch:
            self._unrecorded.pop(row.id, None)
            self._finished.discard(row.id)
            self._backlog.remove(row.seller_id)
        states = (
            await self._until_done(f"the health of {len(hooks)} webhooks", health_tx, retry)
            if hooks or failed_pairs
            else []
        )
        # Waiting attempts follow what the outcomes did to their webhook: a halved concurrency
        # (429) applies at once, a disabled webhook (410, or failing past FAILING_DISABLE_AFTER_S)
        # sends nothing more.
        disabled: set[int] = set()
        for webhook_id, enabled, live_concurrency in states:
            if not enabled:
                disabled.add(webhook_id)
            else:
                self._lanes.set_limit(webhook_id, live_concurrency)
        self._start_waiting()
        self._forget(self._lanes.drop(webhooks=disabled))
        await self._give_back_unsent()
        return planned.retrying

    # -- housekeeping and shutdown -------------------------------------------------------------

    async def prune_loop(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    while await delivery.prune(conn, self.settings.delivery_retention_s, PRUNE_BATCH) == PRUNE_BATCH:
                        pass
            except Exception as exc:  # pruning is housekeeping: the next round will do it
                log.warning("dispatcher: pruning skipped (%s)", exc)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def cut_short(self) -> None:
        """Stop waiting for the attempts in flight (a `stop` under way returns soon): each is cut
        off and its lease given back, as if its time had run out."""
        for task in list(self._sending):
            task.cancel()

    async def stop(self, timeout_s: float) -> None:
        """Stop claiming; let attempts in flight finish (up to `timeout_s`) and record them; give
        back the leases of any cut short, so another process sends them without waiting."""
        self._stopping.set()
        self._lanes.clear_waiting()  # their leases are given back below, with those cut short
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout_s)
        for task in list(self._sending):
            task.cancel()
        # Outcomes in the recorder's hands (it runs until the engine stops) are recorded by it:
        # wait for that rather than give their leases back and send them again. A little past
        # the bound: they are already sent.
        while self._finished and loop.time() < deadline + STOP_RECORD_GRACE_S:
            self._recorded.clear()
            await wait_any([self._recorded], deadline + STOP_RECORD_GRACE_S - loop.time())
        batch: list[tuple[ClaimedEvent, SendResult]] = []
        while not self._results.empty():
            batch.append(self._results.get_nowait())
        with contextlib.suppress(*_DB_ERRORS):
            if batch:
                await self._record(batch, retry=False)
            async with self.pool.acquire() as conn:
                await delivery.release_leases(conn, list(self._unrecorded))
