"""Lanes: pure bookkeeping, no database, no network, no clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.policy.lanes import Lanes, Owner, handoff_budget, owner_handoff_budget, owner_max_held


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    webhook_id: int


def row(event_id: int, webhook_id: int) -> Attempt:
    return Attempt(event_id, webhook_id)


def test_a_lane_starts_at_most_its_limit_and_the_next_one_when_one_is_done() -> None:
    # given 5 attempts of one webhook with live concurrency 2
    lanes: Lanes[Attempt] = Lanes(max_sending=100, owner_max_sending=100)
    for i in range(5):
        lanes.add(row(i, 7), limit=2, owner=None)
    # when started, then only 2 go, in claim order
    assert [r.id for r in lanes.take()] == [0, 1]
    assert lanes.take() == [] and lanes.waiting(7) == 3
    # and each finished attempt makes room for exactly one more
    lanes.done(7)
    assert [r.id for r in lanes.take()] == [2]


# --- sharing slots by owner: table-driven ----------------------------------------------------


@dataclass(frozen=True)
class Hook:
    webhook_id: int
    owner: Owner
    limit: int
    attempts: int
    failing: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    max_sending: int
    owner_max_sending: int
    hooks: tuple[Hook, ...]  # added in this order, attempts of a hook numbered webhook_id * 100 + i
    first: list[int]  # webhooks of the attempts the first take starts, in order
    done: tuple[int, ...] = ()  # then these webhooks finish one attempt each
    then: list[int] | None = None  # webhooks of the attempts the next take starts, in order


CASES = [
    Case(
        "an owner sends at most its share, whatever its webhooks' concurrency",
        max_sending=10, owner_max_sending=3,
        hooks=(Hook(1, 5, limit=100, attempts=5), Hook(2, 5, limit=100, attempts=5)),
        first=[1, 2, 1],
    ),
    Case(
        "a webhook's own limit still holds below its owner's share",
        max_sending=10, owner_max_sending=8,
        hooks=(Hook(1, 5, limit=2, attempts=5),),
        first=[1, 1],
    ),
    Case(
        "the process bound holds below every owner's share",
        max_sending=3, owner_max_sending=8,
        hooks=(Hook(1, 5, limit=10, attempts=5), Hook(2, 6, limit=10, attempts=5)),
        first=[1, 2, 1],
    ),
    Case(
        "an owner with many webhooks gets no more turns than an owner with one",
        max_sending=4, owner_max_sending=4,
        hooks=(*(Hook(w, 1, limit=100, attempts=3) for w in range(1, 9)), Hook(20, None, limit=100, attempts=3)),
        first=[1, 20, 2, 20],
    ),
    Case(
        "a freed slot goes to the next owner in turn, not back to the one that freed it",
        max_sending=3, owner_max_sending=3,
        hooks=(Hook(1, 1, limit=100, attempts=5), Hook(2, 2, limit=100, attempts=5), Hook(3, 3, limit=100, attempts=5)),
        first=[1, 2, 3],
        done=(3,),
        then=[1],
    ),
    Case(
        "an owner at its share waits for its own attempts, the others go meanwhile",
        max_sending=10, owner_max_sending=2,
        hooks=(Hook(1, 1, limit=100, attempts=9), Hook(2, 2, limit=100, attempts=9)),
        first=[1, 2, 1, 2],
        done=(2,),
        then=[2],
    ),
    Case(
        "an owner's webhooks take turns for its slots as they free up",
        max_sending=100, owner_max_sending=2,
        hooks=(Hook(1, 7, limit=100, attempts=9), Hook(2, 7, limit=100, attempts=9), Hook(3, 7, limit=100, attempts=1)),
        first=[1, 2],
        done=(1, 2),  # both slots back: webhook 3, waiting since before, goes before 1 again
        then=[3, 1],
    ),
    Case(
        "a lane back under its own limit rejoins the turns behind those waiting",
        max_sending=100, owner_max_sending=3,
        hooks=(Hook(1, 7, limit=1, attempts=3), Hook(2, 7, limit=100, attempts=9)),
        first=[1, 2, 2],
        done=(2, 1),
        then=[2, 1],
    ),
    Case(
        "an owner's failing webhooks hold at most half its slots, the rest stay for its healthy ones",
        max_sending=100, owner_max_sending=4,
        hooks=(Hook(1, 7, 100, 9, failing=True), Hook(2, 7, 100, 9, failing=True), Hook(3, 7, 100, 9)),
        first=[1, 2, 3, 3],
        done=(3,),
        then=[3],
    ),
    Case(
        "a failing attempt done gives the failing webhooks held back their turn again",
        max_sending=100, owner_max_sending=4,
        hooks=(Hook(1, 7, 100, 9, failing=True), Hook(2, 7, 100, 9, failing=True), Hook(3, 7, 100, 1)),
        first=[1, 2, 3],  # a slot stays free: only failing ones are waiting
        done=(2,),
        then=[1],
    ),
    Case(
        "a failing webhook alone gets half its owner's slots",
        max_sending=100, owner_max_sending=4,
        hooks=(Hook(1, None, 100, 9, failing=True),),
        first=[1, 1],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_send_slots_are_shared_by_owner(case: Case) -> None:
    # given the attempts of these webhooks, claimed in this order
    lanes: Lanes[Attempt] = Lanes(max_sending=case.max_sending, owner_max_sending=case.owner_max_sending)
    for hook in case.hooks:
        for i in range(hook.attempts):
            lanes.add(row(hook.webhook_id * 100 + i, hook.webhook_id), hook.limit, hook.owner, hook.failing)
    # when started, then these go, in this order
    assert [r.webhook_id for r in lanes.take()] == case.first
    assert lanes.take() == []  # nothing more until something finishes
    # and when attempts finish, these go next
    for webhook_id in case.done:
        lanes.done(webhook_id)
    if case.then is not None:
        assert [r.webhook_id for r in lanes.take()] == case.then
    # and no bound is ever exceeded
    owners = {h.owner for h in case.hooks}
    assert lanes.sending <= case.max_sending
    assert all(lanes.owner_sending(o) <= case.owner_max_sending for o in owners)
    assert lanes.sending == sum(lanes.owner_sending(o) for o in owners)


def test_an_owner_hogging_its_share_leaves_the_process_to_the_others_for_good() -> None:
    # given a process of 8 slots, 4 per owner, a seller whose 8 webhooks hang (never done) and
    # the operator's one webhook with a steady stream of attempts
    lanes: Lanes[Attempt] = Lanes(max_sending=8, owner_max_sending=4)
    for w in range(1, 9):
        for i in range(50):
            lanes.add(row(w * 100 + i, w), limit=100, owner=1)
    for i in range(200):
        lanes.add(row(9000 + i, 90), limit=100, owner=None)
    started = lanes.take()
    hanging = [r for r in started if r.webhook_id != 90]
    operator = [r for r in started if r.webhook_id == 90]
    # when the operator's attempts finish as they start, round after round
    for _ in range(30):
        # then it has its whole share every round, and the seller never more than its own
        assert len(operator) == 4 and len(hanging) == 4 and lanes.owner_sending(1) == 4
        for _ in operator:
            lanes.done(90)
        operator = lanes.take()
        assert {r.webhook_id for r in operator} == {90}


def test_a_lane_is_failing_from_a_failed_attempt_until_one_is_delivered() -> None:
    # given a healthy webhook with an owner's 4 slots sending and more waiting
    lanes: Lanes[Attempt] = Lanes(max_sending=100, owner_max_sending=4)
    for i in range(20):
        lanes.add(row(i, 1), limit=100, owner=3)
    assert len(lanes.take()) == 4
    # when an attempt fails, then its slots shrink to the owner's failing share (2) as they free up
    lanes.outcome(1, delivered=False)
    for expected in (0, 0, 1, 1):
        lanes.done(1)
        assert len(lanes.take()) == expected
    assert lanes.owner_sending(3) == 2
    # and a claim that saw it healthy does not make it healthy again
    lanes.add(row(100, 1), limit=100, owner=3, failing=False)
    assert lanes.take() == []
    # when an attempt is delivered, then it takes its owner's whole share again
    lanes.outcome(1, delivered=True)
    assert len(lanes.take()) == 2 and lanes.owner_sending(3) == 4


def test_a_429_halves_the_lane_at_once_and_a_recorded_limit_replaces_it() -> None:
    # given a webhook sending 8 at a time with more waiting
    lanes: Lanes[Attempt] = Lanes(max_sending=100, owner_max_sending=100)
    for i in range(20):
        lanes.add(row(i, 3), limit=8, owner=2)
    assert len(lanes.take()) == 8
    # when one answer is a 429, then the next round is half as wide
    lanes.halve(3)
    for _ in range(8):
        lanes.done(3)
    assert len(lanes.take()) == 4
    # and the limit recorded in the database replaces it, at once when it is higher
    lanes.set_limit(3, 6)
    assert lanes.limit(3) == 6 and len(lanes.take()) == 2


def test_dropping_returns_the_waiting_events_and_never_the_ones_sending() -> None:
    # given two webhooks with attempts sending and waiting
    lanes: Lanes[Attempt] = Lanes(max_sending=100, owner_max_sending=100)
    for i in range(4):
        lanes.add(row(i, 1), limit=1, owner=None)
        lanes.add(row(10 + i, 2), limit=1, owner=None)
    lanes.take()
    # when one webhook's waiting attempts and one event of the other are dropped
    assert sorted(lanes.drop(webhooks={1})) == [1, 2, 3]
    assert lanes.drop(events={12}) == [12]
    # then the sending ones stay counted, and the rest still go in order
    assert lanes.sending == 2 and lanes.waiting(1) == 0
    lanes.done(2)
    assert [r.id for r in lanes.take()] == [11]


def test_idle_lanes_and_owners_are_forgotten() -> None:
    lanes: Lanes[Attempt] = Lanes(max_sending=100, owner_max_sending=100)
    lanes.add(row(1, 5), limit=1, owner=4)
    lanes.take()
    lanes.done(5)
    assert len(lanes) == 0 and lanes.take() == [] and lanes.owner_sending(4) == 0
    lanes.add(row(2, 6), limit=1, owner=4)
    lanes.clear_waiting()
    assert len(lanes) == 0 and lanes.take() == []


def test_a_handoff_gets_what_a_claim_would_lease_and_nothing_while_failing() -> None:
    # a healthy webhook: its claim-ahead rounds, less what is leased anywhere
    assert handoff_budget(live_concurrency=10, leased=0, failing=False, ahead=25) == 250
    assert handoff_budget(live_concurrency=10, leased=240, failing=False, ahead=25) == 10
    assert handoff_budget(live_concurrency=2, leased=80, failing=False, ahead=25) == 0  # after a 429 halving
    # a failing one goes claimed round by round
    assert handoff_budget(live_concurrency=10, leased=0, failing=True, ahead=25) == 0


@pytest.mark.parametrize(
    ("owner_max_sending", "owner_leased", "budget"),
    [(64, 0, 1024), (64, 1000, 24), (64, 1024, 0), (64, 1300, 0), (2, 3, 29)],
)
def test_an_owners_handoff_is_bounded_by_its_held_share(owner_max_sending: int, owner_leased: int, budget: int) -> None:
    assert owner_max_held(64) == 1024  # 16 rounds of an owner's slots: half of a process's MAX_HELD
    assert owner_handoff_budget(owner_max_sending, owner_leased) == budget


def test_saturated_means_every_slot_taken_with_attempts_waiting_only_for_one() -> None:
    # given a process of 4 slots, 2 an owner
    lanes: Lanes[Attempt] = Lanes(max_sending=4, owner_max_sending=2)
    for i in range(3):
        lanes.add(row(i, 1), limit=10, owner=1)
        lanes.add(row(10 + i, 2), limit=10, owner=2)
    # when 4 start: every slot is taken, but each owner is at its own share, so nothing waits for
    # a slot of the process's
    assert len(lanes.take()) == 4
    assert not lanes.saturated()
    # when a third owner has attempts waiting, a slot of the process's is all they need
    lanes.add(row(20, 3), limit=10, owner=3)
    assert lanes.take() == [] and lanes.saturated()
    # then a finished attempt hands the slot to the third owner; the first owner, now with a slot
    # of its own free and its third attempt waiting, waits for one of the process's
    lanes.done(1)
    assert [a.id for a in lanes.take()] == [20]
    assert lanes.saturated()
    # and once no one waits, it is not saturated
    lanes.done(1)
    assert [a.id for a in lanes.take()] == [2]
    assert not lanes.saturated()


def test_a_slow_webhook_waiting_behind_its_own_concurrency_never_saturates() -> None:
    lanes: Lanes[Attempt] = Lanes(max_sending=2, owner_max_sending=2)
    for i in range(50):
        lanes.add(row(i, 1), limit=2, owner=1)  # its two attempts hang; 48 wait behind them
    assert len(lanes.take()) == 2
    assert not lanes.saturated()
