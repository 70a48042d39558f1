"""Time budgets of evaluations (app.evaluation.budgets): what a budget is charged, and how the middleware
stops a spent run. Pure: a hand-driven clock; coroutines are stepped by hand."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from app.evaluation.budgets import CLOCK_EVERY, Budget, BudgetExceeded, Meter, Share


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resolve(budget: Budget) -> Any:
    """One field resolution through the middleware, of a field whose value is 1."""
    return budget.resolve(lambda root, info: 1, None, None)


def step(budget: Budget) -> None:
    """A resolution whose outcome does not matter here (a refusal is closed unrun)."""
    result = resolve(budget)
    if isinstance(result, Coroutine):
        result.close()


def stretch(budget: Budget, clock: Clock, seconds: float, steps: int = 100) -> None:
    """`budget` resolves `steps` fields one after another, taking `seconds` in all."""
    for _ in range(steps):
        clock.now += seconds / steps
        step(budget)


def refused(result: Any) -> bool:
    """A refusal is an awaitable that raises BudgetExceeded when run."""
    if not isinstance(result, Coroutine):
        return False
    with pytest.raises(BudgetExceeded):
        result.send(None)
    return True


def test_a_budget_is_charged_its_own_work_not_the_work_of_budgets_it_waited_behind() -> None:
    # given an expensive and a cheap run started together
    clock = Clock()
    m = Meter(clock)
    expensive, cheap = m.budget(1.0), m.budget(1.0)
    step(cheap)
    # when the expensive one resolves for 3 s of CPU while the cheap one waits its turn
    stretch(expensive, clock, 3.0, steps=3000)
    clock.now += 0.002
    step(cheap)
    # then only the expensive one is spent; the cheap one is charged nothing of the 3 s
    assert expensive.charged_s() == pytest.approx(3.0, abs=0.01)
    assert cheap.charged_s() < 0.01
    assert refused(resolve(expensive))
    assert resolve(cheap) == 1


def test_a_long_stretch_between_two_reads_is_the_first_readers_work() -> None:
    # given a run that, after a resolution, spends 0.3 s without one (graphql-core making a task
    # for each of 20,000 fields), while another run waits; the waiting one reads next
    clock = Clock()
    m = Meter(clock)
    busy, waiting = m.budget(1.0), m.budget(1.0)
    step(waiting)
    step(busy)
    clock.now += 0.3
    step(waiting)
    # then the stretch is the busy run's, and the waiting one is not charged for it
    assert busy.own_s == pytest.approx(0.3)
    assert waiting.charged_s() == pytest.approx(0.0, abs=1e-9)


def test_a_run_that_only_waits_is_charged_the_wait() -> None:
    # given a run waiting 2 s on I/O (no resolutions meanwhile)
    clock = Clock()
    waiting = Meter(clock).budget(1.0)
    step(waiting)
    clock.now += 2.0
    # then its waiter finds it spent: time not yet attributed counts as its own
    assert waiting.remaining_s() <= 0 and waiting.exceeded


def test_time_before_a_budget_started_never_credits_it() -> None:
    # given a run that ended, then the loop idle for 10 s
    clock = Clock()
    m = Meter(clock)
    step(m.budget(1.0))
    clock.now += 10.0
    # when a new run starts and does 1.5 s of work
    fresh = m.budget(1.0)
    stretch(fresh, clock, 1.5)
    # then it is charged that work, not credited with the idle time the earlier run was given
    assert fresh.charged_s() == pytest.approx(1.5, abs=0.02)
    assert refused(resolve(fresh))


def test_the_clock_is_read_once_per_stretch_start_and_every_nth_check() -> None:
    reads = 0
    clock = Clock()

    def counting() -> float:
        nonlocal reads
        reads += 1
        return clock.now

    m = Meter(counting)
    a, b = m.budget(1.0), m.budget(1.0)
    reads = 0
    for _ in range(4 * CLOCK_EVERY):
        step(a)
    assert reads == 5  # the stretch's first resolution, then every CLOCK_EVERY-th check
    reads = 0
    step(b)
    step(a)
    assert reads == 2  # a new stretch each


def test_a_spent_budget_stops_resolvers_that_were_called_but_had_not_started() -> None:
    # given an async resolver called (its coroutine made) while the budget was fresh
    clock = Clock()
    budget = Meter(clock).budget(1.0)
    started = False

    async def products() -> list[int]:
        nonlocal started
        started = True
        return [1, 2, 3]

    guarded = budget.resolve(lambda root, info: products(), None, None)
    # when the budget is spent (the run's waiter finds it so) before graphql-core gets to run it
    clock.now += 2.0
    assert budget.remaining_s() <= 0
    # then it stops without running the resolver (and without a never-awaited warning)
    with pytest.raises(BudgetExceeded):
        guarded.send(None)
    assert not started


def test_a_fresh_budget_runs_async_resolvers_to_their_result() -> None:
    budget = Meter(Clock()).budget(1.0)

    async def products() -> list[int]:
        return [1, 2, 3]

    guarded = budget.resolve(lambda root, info: products(), None, None)
    with pytest.raises(StopIteration) as done:
        guarded.send(None)
    assert done.value.value == [1, 2, 3]


def test_a_share_spends_the_expensive_members_and_spares_the_cheap_one() -> None:
    # given three queries run one by one under one shared allowance of 1 s
    clock = Clock()
    m = Meter(clock)
    share = Share(1.0, members=3)
    hog_a, hog_b, cheap = (m.budget(1.0, share) for _ in range(3))
    stretch(cheap, clock, 0.05)
    stretch(hog_a, clock, 0.6)
    stretch(hog_b, clock, 0.6)  # the share is over 1 s from here on
    # then both expensive ones are spent though neither used its own 1 s; the cheap one is not
    assert refused(resolve(hog_a)) and refused(resolve(hog_b))
    assert resolve(cheap) == 1
    assert share.spent_s == pytest.approx(1.25, abs=0.01)
