"""Time budgets of webhook evaluations, charged fairly while several run on one event loop.

A webhook query can be expensive (wide fan-out: `products { seller { products … } }`), and
its cost is CPU on the engine's event loop, which other owners' evaluations and deliveries
share. Cancelling a task only lands at an `await` that suspends, and once a DataLoader's cache
is warm a wide query resolves for a long time without one: under a plain `asyncio.timeout`
such a query overran a 1 s deadline by seconds. So a `Budget` is also a graphql-core
middleware: field resolutions check it, and once it is spent every further resolution raises
`BudgetExceeded`, which ends the execution within a few resolutions. Measured on a busy 2-core
machine: ten invoices of a query that takes 1 s of CPU each are done 0.1-0.3 s after a 0.5 s
budget is spent (0.2-0.6 s after a 1 s one), most of it collecting the garbage they made.

What a budget is charged. Evaluations of different owners run at once on one loop, so wall
time since a budget started includes the time the loop spent on the others: an owner whose
cheap query waits behind another's expensive one must not be charged for it. A `Meter` (one per
engine) attributes time to budgets: budgets read the clock as they resolve fields, and the time
from one read to the next is the work of the budget that read first (one thread, no preemption:
what ran in between is what its resolutions set off — building objects, graphql-core's own
bookkeeping, the garbage collections its allocations triggered). A budget is charged its wall
time minus what the meter attributed to other budgets meanwhile: it pays for its own work and
its own waits, never for another evaluation's. Idle time (everyone waiting on SQL) goes to the
last reader, which credits the others; a run that only waits is still caught, by its waiter,
which counts time not yet attributed as its own.

Pure: no I/O; the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import CoroutineType
from typing import Any

# Reading the clock costs about as much as the rest of the check (~0.25 µs here); within one
# stretch of a budget's resolutions it is read on every 8th (a power of two: a bit mask).
CLOCK_EVERY = 8


class BudgetExceeded(BaseException):
    """Raised inside an execution once its budget is spent.

    A BaseException on purpose, as asyncio.CancelledError is: graphql-core turns an
    `Exception` from a resolver into a field error, keeps executing the siblings, and its
    `gather_with_cancel` then cancels them — and with them DataLoader futures that other
    executions sharing the loaders wait on. This passes through graphql-core unhandled, ends
    the execution, and cancels nothing."""


class Meter:
    """Attributes evaluation time to budgets; one per engine (per event loop)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.attributed_s = 0.0  # time attributed to any budget, ever
        self._last: Budget | None = None  # the budget that read the clock last
        self._last_at = 0.0

    def budget(self, limit_s: float, share: Share | None = None) -> Budget:
        """A budget of `limit_s`, starting now."""
        # Close the interval running now (it is the last reader's), so that none of the time
        # before this budget started is attributed after it started: it would credit it.
        now = self.clock()
        if self._last is not None:
            self._last._attribute(now - self._last_at)
        self._last_at = now
        return Budget(self, limit_s, share, now)

    def tick(self, budget: Budget) -> float:
        """A clock read by `budget`: the time since the previous read is the previous reader's.
        Returns now."""
        now = self.clock()
        if self._last is not None:
            self._last._attribute(now - self._last_at)
        self._last, self._last_at = budget, now
        return now


class Share:
    """One allowance split between budgets that run together (one owner's queries run one by
    one after their merged run breached): once their own time adds up to more than `limit_s`,
    a budget that has used more than an even part of it is spent. A cheap query among expensive
    ones finishes; the expensive ones together cost about `limit_s` more, not `limit_s` each."""

    def __init__(self, limit_s: float, members: int) -> None:
        self.limit_s = limit_s
        self.members = max(1, members)
        self.spent_s = 0.0

    def over(self, own_s: float) -> bool:
        return self.spent_s > self.limit_s and own_s > self.limit_s / self.members


class Budget:
    """The time one evaluation run may take, and the graphql-core middleware that enforces it
    (pass it as `middleware=MiddlewareManager(budget)`)."""

    def __init__(self, meter: Meter, limit_s: float, share: Share | None, started_at: float) -> None:
        self.meter = meter
        self.limit_s = limit_s
        self.share = share
        self.own_s = 0.0  # time the meter attributed to this budget
        self.exceeded = False
        self._checks = 0
        self._started_at = started_at
        self._attributed_at_start = meter.attributed_s

    def _attribute(self, seconds: float) -> None:
        self.own_s += seconds
        self.meter.attributed_s += seconds
        if self.share is not None:
            self.share.spent_s += seconds

    def charged_s(self, now: float | None = None) -> float:
        """Wall time since the start, less other budgets' attributed time meanwhile."""
        meter = self.meter
        now = meter.clock() if now is None else now
        return (now - self._started_at) - (meter.attributed_s - self._attributed_at_start - self.own_s)

    def remaining_s(self) -> float:
        """How much longer the run may take (≤ 0: spent). For a waiter: resolutions check by
        themselves, but a run waiting on I/O resolves nothing."""
        if not self.exceeded and (
            (self.share is not None and self.share.over(self.own_s)) or self.charged_s() >= self.limit_s
        ):
            self.exceeded = True
        return 0.0 if self.exceeded else self.limit_s - self.charged_s()

    def _check(self) -> bool:
        """Whether the budget is spent. The clock is read when a stretch of this budget's work
        begins and on every CLOCK_EVERY-th check of it — after the budget is spent too: the
        work that winds the run down is still its own."""
        self._checks += 1
        if not self._checks & (CLOCK_EVERY - 1) or self.meter._last is not self:
            self._read()
        return self.exceeded

    def _read(self) -> None:
        now = self.meter.tick(self)
        if not self.exceeded and (
            self.charged_s(now) > self.limit_s or (self.share is not None and self.share.over(self.own_s))
        ):
            self.exceeded = True

    def resolve(self, next_: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
        """graphql-core middleware: every field resolution of the run passes here."""
        self._checks += 1  # `_check`, inlined: this runs for every field
        if not self._checks & (CLOCK_EVERY - 1) or self.meter._last is not self:
            self._read()
        if self.exceeded:
            # Refused as an awaitable, not raised here: a raise would unwind graphql-core past
            # the coroutines it made for this object's other fields, never to be awaited.
            return self._refuse()
        result = next_(root, info, **args)
        if type(result) is CoroutineType:
            return self._guard(result)
        return result

    async def _refuse(self) -> Any:
        self._check()
        raise BudgetExceeded

    async def _guard(self, resolving: CoroutineType[Any, Any, Any]) -> Any:
        # graphql-core starts an async resolver some loop turns after calling it (in a task of
        # a gather); by then the budget may be spent, and a wide query has thousands of them
        # waiting, each about to build its objects from rows. They stop here instead.
        if self._check():
            resolving.close()
            raise BudgetExceeded
        return await resolving
