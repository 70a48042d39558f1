"""Evaluating groups under a time budget, on a test-only schema (tests/support/slow_schema.py): a
run waiting on I/O is given up at its budget, a query that breached is not run again in the batch,
and runs are sized by what the same queries cost last time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.evaluation import execute
from app.evaluation.budgets import Meter
from app.evaluation.execute import Breach, Budgets, evaluate_many
from tests.support.engine_harness import wait_until
from tests.support.slow_schema import SLOW_SCHEMA, slow_query


def budgets(time_ms: int = 60_000, payload_bytes: int = 2**31) -> Budgets:
    return Budgets(Meter(), time_ms, payload_bytes)


async def test_a_run_waiting_on_io_is_given_up_at_its_budget_while_other_groups_finish() -> None:
    # given a group whose resolver waits on a gate that stays shut, and another group
    slow, fast_query = slow_query("query($id: ID!) { invoice(id: $id) { slow { n } } }"), slow_query(
        "query($id: ID!) { invoice(id: $id) { fast } }"
    )
    context: dict[str, Any] = {"gate": asyncio.Event(), "started": 0, "resolved_after_gate": 0}
    limits = budgets(time_ms=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # when both are evaluated at once, as a batch's groups are
    waited, other = await asyncio.gather(
        evaluate_many(SLOW_SCHEMA, context, [slow], ["a", "b"], limits),
        evaluate_many(SLOW_SCHEMA, context, [fast_query], ["a", "b"], limits),
    )
    elapsed_s = loop.time() - started
    # then the waiting group breaches at its budget (generous margin), the other has its payloads
    assert waited[slow] == [Breach("time", "evaluation exceeded its 100 ms budget")] * 2
    assert other[fast_query] == [{"data": {"invoice": {"fast": 7}}}] * 2
    assert elapsed_s < 1.0
    # and the executions left waiting end by themselves once the gate opens, resolving nothing more
    context["gate"].set()
    await wait_until(lambda: not execute._abandoned, timeout_s=5)
    assert context["started"] == 2 and context["resolved_after_gate"] == 0


async def test_a_query_that_breached_is_not_evaluated_for_the_rest_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given runs of two entities, and a query that waits past its budget on every entity
    monkeypatch.setattr(execute, "FIRST_RUN", 2)
    slow = slow_query("query($id: ID!) { invoice(id: $id) { slow { n } } }")
    context: dict[str, Any] = {"gate": asyncio.Event(), "started": 0, "resolved_after_gate": 0}
    # when it is evaluated for five entities
    outcomes = await evaluate_many(SLOW_SCHEMA, context, [slow], list("abcde"), budgets(time_ms=50))
    context["gate"].set()
    # then the first run breaches, and the other three entities are failed without being run
    assert [o.evaluated for o in outcomes[slow] if isinstance(o, Breach)] == [True, True, False, False, False]
    assert outcomes[slow][2].error == (
        "not evaluated: the query exceeded its 50 ms budget on other entities of this batch"
    )
    assert context["started"] == 2


def test_runs_are_sized_by_what_the_same_queries_cost_last_time() -> None:
    sizes, key = execute.RunSizes(), ("query-a", "query-b")
    # unknown queries start at the first run's size
    assert sizes.size(key, 0.5) == execute.FIRST_RUN
    # cheap ones get full runs; 10 ms an entity gets what takes a quarter of the budget
    sizes.observe(key, 25, 0.025)
    assert sizes.size(key, 0.5) == execute.MAX_RUN
    sizes.observe(key, 25, 0.25)
    assert sizes.size(key, 0.5) == 12
    # a run that breached (charged at least the budget) shrinks the next to a quarter, down to one
    sizes.observe(key, 12, 0.6)
    assert sizes.size(key, 0.5) == 2
    sizes.observe(key, 2, 0.6)
    assert sizes.size(key, 0.5) == 1
    # other queries are sized on their own
    assert sizes.size(("query-a",), 0.5) == execute.FIRST_RUN

