"""Lanes: the attempts one process holds, a lane per webhook, grouped by owner (a seller, or the
operator). Pure bookkeeping: the dispatcher adds what it claims, starts what `take` hands out and
reports each finished attempt with `done`.

Fair delivery across owners — the rule:

- **Send slots.** A process sends at most `max_sending` attempts at once (MAX_IN_FLIGHT, 256),
  one owner at most `owner_max_sending` of them (`HOOKQL_OWNER_MAX_SENDING`, 64), and one
  webhook at most its live concurrency — whichever bound is reached first. No owner, however
  many webhooks it has and whatever their concurrency, holds more than its share of slots, so
  with the defaults at least 3/4 of them are always left to the others.
- **Turns.** When slots free up, owners with attempts waiting take turns, one attempt each, in
  a ring: an owner with 25 webhooks gets no more of the freed slots than an owner with one.
  Within an owner, its webhooks take turns the same way.
- **Held events.** A claim leases an owner at most `owner_max_held(owner_max_sending)` events (16
  rounds of its slots, 1,024: half of a process's MAX_HELD) counting those already leased to it
  anywhere — finished attempts waiting for the recorder too — and the producer hands over fresh
  events within the same bound: one owner's backlog, or its attempts piling up before a slow
  recorder, cannot fill a process's held events (MAX_HELD 2,048) and leave nothing to claim for
  the others.
  The bound counts leases in every process (a lease does not say whose it is), so with several
  processes an owner holds at most that many over all of them. The owner's webhooks share it the
  fewest-held first; a failing webhook is still leased one round at a time. When a process has
  little room left, owners take turns for it in the claim too.
- **Failing webhooks.** A webhook is failing from an attempt that failed (or when it was claimed
  failing) until one is delivered. An owner's failing webhooks hold at most half its slots
  between them (`failing_share`, 32); the other half stays for its healthy webhooks.
- **Hanging receivers.** An attempt holds its slot until the receiver answers or the webhook's
  timeout (1-30 s) passes, so an owner whose receivers hang slows only itself, never the others
  (above). Within the owner, a hanging webhook takes slots as a healthy one only until its first
  attempts time out; from then on it is failing and its retries (one claimed round at a time, as
  their backoff comes due) go through the failing half. So the owner's healthy webhooks wait
  about one timeout of the hanging ones (their first, before they are known to be failing), then
  deliver at their usual pace beside them."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from app.policy.retry import halved

Owner = int | None  # a seller id; None is the operator


class Held(Protocol):
    """What the lanes read of a held attempt: its event and its webhook."""

    @property
    def id(self) -> int: ...

    @property
    def webhook_id(self) -> int: ...


H = TypeVar("H", bound=Held)

# An owner's held events: this many rounds of its send slots. Sending, waiting and sent-but-not-
# yet-recorded attempts all hold a lease, so at a thousand deliveries a second an owner needs
# hundreds: 4 rounds (256) cut the bench's throughput by a quarter, 16 (1,024, half of MAX_HELD)
# measured level with the engine before the bound, and still leave half a process's room to the others.
OWNER_HELD_ROUNDS = 16


def owner_max_held(owner_max_sending: int) -> int:
    """Events one owner may hold leased (sending or waiting) over all its webhooks."""
    return OWNER_HELD_ROUNDS * owner_max_sending


def failing_share(owner_max_sending: int) -> int:
    """Of an owner's send slots, those its failing webhooks may hold at once."""
    return max(1, owner_max_sending // 2)


def handoff_budget(live_concurrency: int, leased: int, failing: bool, ahead: int) -> int:
    """How many fresh events of a webhook may be leased to this process as they are enqueued:
    what a claim would lease it (`ahead` rounds of its live concurrency, less the events leased
    anywhere), and none while it is failing — a failing webhook's attempts go one claimed round
    at a time, each with its configuration read afresh."""
    return 0 if failing else max(0, live_concurrency * ahead - leased)


def owner_handoff_budget(owner_max_sending: int, owner_leased: int) -> int:
    """How many fresh events of one owner, over all its webhooks, may be leased as they are
    enqueued: what a claim would lease it (`owner_max_held`, less the owner's events leased
    anywhere)."""
    return max(0, owner_max_held(owner_max_sending) - owner_leased)


@dataclass
class _Lane(Generic[H]):
    owner: Owner
    limit: int
    sending: int = 0
    waiting: deque[H] = field(default_factory=deque)
    failing: bool = False  # failing as claimed, or its last attempt here failed

    @property
    def ready(self) -> bool:
        """It would start an attempt if its owner and the process had a slot."""
        return bool(self.waiting) and self.sending < self.limit


@dataclass
class _Owner:
    sending: int = 0
    failing_sending: int = 0  # of `sending`, those of its failing lanes
    # Its lanes that were ready when queued, in turn order (stale entries are skipped on their turn).
    turns: dict[int, None] = field(default_factory=dict)
    # Failing lanes that had their turn while the owner's failing share was full.
    held_back: dict[int, None] = field(default_factory=dict)


class Lanes(Generic[H]):
    """Held attempts (`Held`: an event `id` and its `webhook_id`) in a lane per webhook."""

    def __init__(self, max_sending: int, owner_max_sending: int) -> None:
        self.max_sending = max_sending
        self.owner_max_sending = owner_max_sending
        self.owner_max_failing = failing_share(owner_max_sending)
        self.sending = 0  # attempts started and not yet done, over all lanes
        self._lanes: dict[int, _Lane[H]] = {}
        self._owners: dict[Owner, _Owner] = {}
        # Owners with a lane queued and a slot of their own free, in turn order.
        self._turns: dict[Owner, None] = {}

    def __len__(self) -> int:
        return len(self._lanes)

    def add(self, row: H, limit: int, owner: Owner, failing: bool = False) -> None:
        """Queue a claimed attempt; `limit` is the webhook's live concurrency as claimed, `owner`
        its seller (None: the operator), `failing` whether it was failing as claimed. Nothing
        starts before `take`."""
        lane = self._lanes.get(row.webhook_id)
        if lane is None:
            lane = self._lanes[row.webhook_id] = _Lane(owner, limit)
        lane.limit = limit
        lane.waiting.append(row)
        if failing:  # a claim may predate outcomes seen here: only a delivery makes a lane healthy
            self._set_failing(lane, True)
        self._queue(row.webhook_id, lane)

    def outcome(self, webhook_id: int, delivered: bool) -> None:
        """What an attempt of this webhook came to: its lane is failing until one is delivered."""
        if (lane := self._lanes.get(webhook_id)) is not None:
            self._set_failing(lane, not delivered)
            self._queue(webhook_id, lane)

    def _set_failing(self, lane: _Lane[H], failing: bool) -> None:
        if lane.failing == failing:
            return
        lane.failing = failing
        state = self._owners.setdefault(lane.owner, _Owner())
        state.failing_sending += lane.sending if failing else -lane.sending
        if not failing:
            self._release_held_back(state)

    def set_limit(self, webhook_id: int, limit: int) -> None:
        if (lane := self._lanes.get(webhook_id)) is not None:
            lane.limit = max(1, limit)
            self._queue(webhook_id, lane)

    def halve(self, webhook_id: int) -> None:
        """A 429: the webhook's next attempts go at half the rate at once, before it is recorded
        (the rule: app.policy.retry.next_concurrency)."""
        if (lane := self._lanes.get(webhook_id)) is not None:
            lane.limit = halved(lane.limit)

    def waiting(self, webhook_id: int) -> int:
        lane = self._lanes.get(webhook_id)
        return len(lane.waiting) if lane else 0

    def held(self, webhook_id: int) -> int:
        """Its attempts waiting or sending."""
        lane = self._lanes.get(webhook_id)
        return len(lane.waiting) + lane.sending if lane else 0

    def limit(self, webhook_id: int) -> int:
        lane = self._lanes.get(webhook_id)
        return lane.limit if lane else 0

    def saturated(self) -> bool:
        """Whether every send slot of the process is taken while attempts wait that only a slot of
        the process's would start: owners with a ready lane and a slot of their own free are queued
        for one. Attempts waiting behind their own webhook's concurrency (a slow receiver) or
        their owner's share do not count: more work handed to this process would only wait too,
        but a slow webhook or owner alone never makes it saturated."""
        return self.sending >= self.max_sending and bool(self._turns)

    def owner_sending(self, owner: Owner) -> int:
        state = self._owners.get(owner)
        return state.sending if state else 0

    def take(self) -> list[H]:
        """The waiting attempts to start now, counted as sending: owners in turn, one attempt
        each per turn, within every bound (see the module's rule)."""
        started: list[H] = []
        while self._turns and self.sending < self.max_sending:
            owner = next(iter(self._turns))
            del self._turns[owner]
            state = self._owners[owner]
            row = self._start_one(state)
            if row is None:
                continue
            started.append(row)
            if state.turns and state.sending < self.owner_max_sending:
                self._turns[owner] = None  # to the back of the ring
        return started

    def _start_one(self, state: _Owner) -> H | None:
        """The next attempt of this owner's lanes in turn, or None when none is ready."""
        while state.turns:
            webhook_id = next(iter(state.turns))
            del state.turns[webhook_id]
            lane = self._lanes.get(webhook_id)
            if lane is None or not lane.ready:
                continue
            if lane.failing:
                if state.failing_sending >= self.owner_max_failing:
                    state.held_back[webhook_id] = None
                    continue
                state.failing_sending += 1
            lane.sending += 1
            state.sending += 1
            self.sending += 1
            row = lane.waiting.popleft()
            if lane.ready:
                state.turns[webhook_id] = None  # to the back of the owner's turns
            return row
        return None

    def done(self, webhook_id: int) -> None:
        """One started attempt of this webhook finished; its slot goes to whoever's turn it is
        at the next `take`."""
        lane = self._lanes[webhook_id]
        state = self._owners[lane.owner]
        lane.sending -= 1
        state.sending -= 1
        self.sending -= 1
        if lane.failing:
            state.failing_sending -= 1
            self._release_held_back(state)
        self._queue(webhook_id, lane)
        self._forget_if_idle(webhook_id)

    def drop(self, *, webhooks: Collection[int] = (), events: Collection[int] = ()) -> list[int]:
        """Forget the waiting (not started) attempts of these webhooks, or these events; returns
        their event ids."""
        dropped: list[int] = []
        for webhook_id, lane in list(self._lanes.items()):
            if webhook_id in webhooks:
                dropped.extend(row.id for row in lane.waiting)
                lane.waiting.clear()
            elif events:
                dropped.extend(row.id for row in lane.waiting if row.id in events)
                lane.waiting = deque(row for row in lane.waiting if row.id not in events)
            self._forget_if_idle(webhook_id)
        return dropped

    def clear_waiting(self) -> None:
        for webhook_id, lane in list(self._lanes.items()):
            lane.waiting.clear()
            self._forget_if_idle(webhook_id)

    def _release_held_back(self, state: _Owner) -> None:
        """Room in the owner's failing share: the lanes held back for it take turns again."""
        for webhook_id in state.held_back:
            state.turns.setdefault(webhook_id)
        state.held_back.clear()

    def _queue(self, webhook_id: int, lane: _Lane[H]) -> None:
        """A lane that may be ready joins its owner's turns (keeping its place if queued), and
        the owner the ring if it has a slot free."""
        state = self._owners.setdefault(lane.owner, _Owner())
        if lane.ready:
            state.turns.setdefault(webhook_id)
        if state.turns and state.sending < self.owner_max_sending:
            self._turns.setdefault(lane.owner)

    def _forget_if_idle(self, webhook_id: int) -> None:
        lane = self._lanes.get(webhook_id)
        if lane is None or lane.waiting or lane.sending:
            return
        del self._lanes[webhook_id]
        state = self._owners[lane.owner]
        state.turns.pop(webhook_id, None)
        state.held_back.pop(webhook_id, None)
        if not state.sending and not state.turns and not state.held_back:
            del self._owners[lane.owner]
            self._turns.pop(lane.owner, None)
