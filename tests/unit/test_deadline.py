"""A request's deadline held while objects complete (app.api.deadline), on a schema of its own:
an execution that completes thousands of objects without awaiting is cancelled within a few of
them once its deadline passes, all of its tasks with it, and the view waiting on it resumes
before they unwind; one without a deadline runs as strawberry's; and the collector is paused
while a cancelled execution unwinds, within bounds."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry

from app.api import deadline as deadline_module
from app.api.deadline import CHECK_EVERY, Deadline, DeadlineExecutor, cancel_execution
from tests.support.engine_harness import wait_until

ITEMS = 10_000


@strawberry.type
class Item:
    n: int

    @strawberry.field
    def label(self, info: strawberry.Info) -> str:
        context = info.context
        context.labelled += 1
        if context.labelled == context.pass_deadline_at:
            context.deadline.at = float("-inf")  # the clock has passed it, as far as the check can tell
        return f"item {self.n}"

    @strawberry.field
    async def waits(self, info: strawberry.Info) -> int:
        info.context.waiting += 1
        try:
            await info.context.gate.wait()
        except asyncio.CancelledError:
            info.context.cancelled += 1
            raise
        return self.n


@strawberry.type
class Query:
    @strawberry.field
    def items(self, count: int) -> list[Item]:
        return [Item(n=n) for n in range(count)]  # loaded already: completed without awaiting


SCHEMA = strawberry.Schema(query=Query, execution_context_class=DeadlineExecutor)


def context(deadline: Deadline | None, pass_deadline_at: int = 0) -> Any:
    return SimpleNamespace(
        deadline=deadline, labelled=0, pass_deadline_at=pass_deadline_at, waiting=0, cancelled=0, gate=None
    )


@pytest.fixture(autouse=True)
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pause of the collector's own for each test, and the collector running after it."""
    monkeypatch.setattr(deadline_module, "_collector", deadline_module._CollectorPause())
    yield
    gc.enable()


async def run(query: str, ctx: Any) -> asyncio.Task[Any]:
    execution = asyncio.ensure_future(SCHEMA.execute(query, context_value=ctx))
    if ctx.deadline is not None:
        ctx.deadline.runs(execution)
    await asyncio.wait({execution})
    return execution


async def test_a_deadline_passing_while_a_list_completes_cancels_the_execution_within_a_few_objects() -> None:
    # given a list of 10,000 loaded objects and a deadline that passes as the 100th completes
    ctx = context(Deadline(asyncio.get_running_loop().time() + 3600), pass_deadline_at=100)
    # when they are completed
    execution = await run(f"{{ items(count: {ITEMS}) {{ n label }} }}", ctx)
    # then the execution is cancelled within CHECK_EVERY more objects, not at its end
    assert execution.cancelled() and ctx.deadline.expired
    assert 100 <= ctx.labelled <= 100 + CHECK_EVERY


async def test_an_execution_without_a_deadline_completes_as_strawberrys_does() -> None:
    ctx = context(None)
    execution = await run(f"{{ items(count: {ITEMS}) {{ n label }} }}", ctx)
    result = execution.result()
    assert not result.errors and ctx.labelled == ITEMS
    assert result.data["items"][-1] == {"n": ITEMS - 1, "label": f"item {ITEMS - 1}"}


async def test_expiring_the_deadline_cancels_every_task_of_the_execution() -> None:
    # given an execution whose 50 async resolvers wait (each in a task of graphql-core's own)
    ctx = context(Deadline(asyncio.get_running_loop().time() + 3600))
    ctx.gate = asyncio.Event()
    execution = asyncio.ensure_future(SCHEMA.execute("{ items(count: 50) { waits } }", context_value=ctx))
    ctx.deadline.runs(execution)
    await wait_until(lambda: ctx.waiting == 50, timeout_s=5)
    # when the deadline expires
    ctx.deadline.expire()
    await asyncio.wait({execution})
    # then the execution is cancelled, each of its resolvers where it waited
    assert execution.cancelled()
    assert ctx.cancelled == 50


async def test_expiring_wakes_the_view_before_the_executions_tasks_unwind() -> None:
    # given an execution of 100 waiting tasks, and the view waiting for it under its deadline
    order: list[str] = []

    async def waits() -> None:
        order.append("started")
        try:
            await asyncio.sleep(3600)
        finally:
            order.append("unwound")

    async def execution() -> None:
        await asyncio.gather(*(waits() for _ in range(100)))

    work = asyncio.ensure_future(execution())
    deadline = Deadline(asyncio.get_running_loop().time() + 3600)
    deadline.runs(work)

    async def view() -> None:
        await deadline.wait(work)
        order.append("view")

    viewing = asyncio.ensure_future(view())
    await wait_until(lambda: order.count("started") == 100, timeout_s=5)
    # when the deadline expires
    deadline.expire()
    await asyncio.wait({work, viewing})
    # then the view resumes first (it answers while the execution unwinds), and every task unwinds
    assert order[100:] == ["view"] + ["unwound"] * 100
    assert work.cancelled()


async def unwinds_when(release: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        await release.wait()


async def cancelled(release: asyncio.Event) -> asyncio.Task[None]:
    """A running execution, cancelled: it unwinds once `release` is set."""
    execution = asyncio.ensure_future(unwinds_when(release))
    await asyncio.sleep(0)  # started: waiting in its sleep
    cancel_execution(execution)
    return execution


async def test_the_collector_is_paused_while_a_cancelled_execution_unwinds() -> None:
    release = asyncio.Event()
    execution = await cancelled(release)
    assert not gc.isenabled()
    release.set()
    await asyncio.wait({execution})
    await wait_until(gc.isenabled, timeout_s=5)


async def test_the_collector_pause_ends_at_its_bound_even_if_the_execution_has_not_unwound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deadline_module, "COLLECTOR_PAUSE_MAX_S", 0.05)
    release = asyncio.Event()
    execution = await cancelled(release)
    assert not gc.isenabled()
    await wait_until(gc.isenabled, timeout_s=5)
    assert not execution.done()
    release.set()
    await asyncio.wait({execution})


async def test_the_collector_runs_between_two_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadline_module, "COLLECTOR_PAUSE_MAX_S", 3600.0)
    # given a pause that ended as its execution unwound
    released = asyncio.Event()
    released.set()
    await asyncio.wait({await cancelled(released)})
    await wait_until(gc.isenabled, timeout_s=5)
    # when another execution is cancelled right after
    release = asyncio.Event()
    execution = await cancelled(release)
    # then the collector is not paused again (not before COLLECTOR_PAUSE_MAX_S has passed)
    assert gc.isenabled()
    release.set()
    await asyncio.wait({execution})


async def test_a_collector_paused_elsewhere_stays_paused() -> None:
    gc.disable()
    release = asyncio.Event()
    execution = await cancelled(release)
    release.set()
    await asyncio.wait({execution})
    assert not gc.isenabled()
