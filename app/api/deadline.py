"""A request's deadline (request_timeout_ms), held while its objects complete, and the
cancellation of an execution that missed it.

app.api.asgi runs each HTTP request under a `Deadline`: at it, a timer cancels the execution.
That timer runs only when the event loop gets to it, and a wide request keeps the loop busy in
long stretches: graphql-core completes a list of loaded objects without awaiting, and a
DataLoader batch wakes thousands of resolutions that all run before the loop looks at its
timers. A costly request ran on for more than a second past its deadline, its own 503 and other
keys' requests waiting meanwhile. So the execution also checks the deadline as it completes
objects (`DeadlineExecutor`): the first completion past it cancels the whole execution at once
(`Deadline.expire`), and it and every later one completes to that cancellation instead of
resolving fields. The view answers as it answers its timer (503 DEADLINE_EXCEEDED), at once.

Per object, not per field, nor per list. Between two object completions only one object's
scalar fields resolve; a list check would miss the thousands of single objects (a line item's
variant) that one DataLoader batch completes. A field middleware costs a call on every
resolution, whichever share of them reads the clock. Measured in-process (scripts/
deadline_overhead.py; 100 invoices with line items, variants and shipments: 4,582 resolutions,
1,351 objects), CPU over strawberry's executor: this check +3-4 %, a field middleware +6-7 %,
this executor for a context without a deadline +0.4-0.9 % (the noise is 1-2 %).

Cancelling unwinds every task of the execution, one step each, and a wide request has tens of
thousands: the loop is busy with them for a while. The view answers before they unwind
(`Deadline.wait`), and `cancel_execution` pauses the cyclic garbage collector until they have: a
full collection during the unwinding walks the whole request's heap, still alive. Measured
in-process with the hostile test's costly request (three runs each, a shared 2-core machine):
unwound 0.5-0.7 s after the deadline with the collector paused, 1.4-1.6 s with it running."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# The clock is read on every CHECK_EVERY-th object an execution completes (a power of two: a bit
# mask). An object's completion is tens of microseconds of work; reading the clock, a tenth of one.
CHECK_EVERY = 8
# The longest the collector stays paused for executions that are unwinding (past it, it runs
# again whether or not they are done), and then the least it runs before it pauses again: under
# a stream of cancellations it runs at least half of the time.
COLLECTOR_PAUSE_MAX_S = 1.0


class Deadline:
    """When a request's execution ends (event-loop time, `loop.time()`). The view makes it and
    names the task that runs the execution (`runs`); the context carries it to the executor,
    which `expire`s it once it finds it passed. `extend_to` only ever moves it later (webhookTest
    waits for its receiver)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False  # the executor found it passed and cancelled the execution
        self._execution: asyncio.Future[Any] | None = None
        self._wake: Callable[[], None] | None = None  # the view's `wait`, under way

    def extend_to(self, at: float) -> None:
        self.at = max(self.at, at)

    def runs(self, execution: asyncio.Future[Any]) -> None:
        self._execution = execution

    async def wait(self, *futures: asyncio.Future[Any]) -> None:
        """Until one of `futures` is done, the deadline as it stands now is reached, or the
        executor expires it. `expire` wakes this directly, before it cancels the execution: the
        view resumes before the execution's tasks unwind (asyncio.wait would resume it a loop
        turn later, after them)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_at(self.at, wake)
        for future in futures:
            future.add_done_callback(wake)
        self._wake = wake
        try:
            await waiter
        finally:
            self._wake = None
            timer.cancel()
            for future in futures:
                future.remove_done_callback(wake)

    def expire(self) -> None:
        """Cancel the execution: every task under it at once, not only the one that found the
        deadline passed."""
        self.expired = True
        if self._wake is not None:
            self._wake()
        if self._execution is not None:
            cancel_execution(self._execution)


class DeadlineExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's graphql-core executor, checking the deadline of a context that carries one
    (an HTTP request's) as it completes objects; without one (in-process calls, websockets, the
    engine's evaluations) it is strawberry's, check and all skipped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: Deadline | None = getattr(self.context_value, "deadline", None)
        if self.deadline is None:
            # graphql-core calls `self.complete_object_value`: the instance's own attribute comes
            # first, and is strawberry's method, so this execution does not pass through the check.
            self.complete_object_value = super().complete_object_value  # type: ignore[method-assign]
            return
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._objects = 0
        # What every object completes to once the deadline has passed: a future already cancelled,
        # as the execution is. Not raised: a raise would unwind graphql-core past the coroutines it
        # made for the objects before this one. Not a coroutine: one never awaited (its execution
        # cancelled before it got there) is warned about.
        self._cancelled: asyncio.Future[Any] = loop.create_future()
        self._cancelled.cancel()

    def complete_object_value(self, *args: Any, **kwargs: Any) -> Any:
        deadline: Deadline = self.deadline  # type: ignore[assignment]  # (None: see __init__)
        self._objects += 1
        if not self._objects & (CHECK_EVERY - 1) and not deadline.expired and self._clock() >= deadline.at:
            deadline.expire()
        if deadline.expired:
            return self._cancelled
        return _complete_object_value(self, *args, **kwargs)


_complete_object_value = StrawberryGraphQLCoreExecutionContext.complete_object_value


class _CollectorPause:
    """The cyclic garbage collector, paused while cancelled executions unwind. One pause at a
    time: a cancellation during it joins it; it ends when all of them are done, or after
    COLLECTOR_PAUSE_MAX_S, and the next starts no sooner than COLLECTOR_PAUSE_MAX_S later. A
    collector someone else paused is left as it is."""

    def __init__(self) -> None:
        self.unwinding: set[asyncio.Future[Any]] = set()
        self._resume: asyncio.TimerHandle | None = None  # ends the pause under way
        self._next_at = float("-inf")  # loop time: no pause starts before it

    def join(self, execution: asyncio.Future[Any]) -> None:
        if self._resume is None:
            loop = asyncio.get_running_loop()
            if not gc.isenabled() or loop.time() < self._next_at:
                return
            gc.disable()
            self._resume = loop.call_later(COLLECTOR_PAUSE_MAX_S, self._end)
        self.unwinding.add(execution)
        execution.add_done_callback(self._done)

    def _done(self, execution: asyncio.Future[Any]) -> None:
        self.unwinding.discard(execution)
        if not self.unwinding:
            self._end()

    def _end(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
            self.unwinding.clear()  # done or not, the pause is over
            self._next_at = asyncio.get_running_loop().time() + COLLECTOR_PAUSE_MAX_S
            gc.enable()


_collector = _CollectorPause()


def cancel_execution(execution: asyncio.Future[Any]) -> None:
    """Cancel a request's execution, with the cyclic garbage collector paused until it has
    unwound (COLLECTOR_PAUSE_MAX_S at most)."""
    if execution.done():
        return
    _collector.join(execution)
    execution.cancel()
