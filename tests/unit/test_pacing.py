"""Delivery paces evaluation (app.engine.producer.Producer._paced): the evaluator does not start a
batch while its process's dispatcher is saturated, stops waiting when it is not, when the engine
stops, or after PACE_MAX_WAIT_S. The hand-off here is a stand-in that is saturated for a set time."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import Settings
from app.engine import producer as producer_module
from app.engine.producer import Producer


class Saturated:
    """Saturated until `until` (monotonic); `room` returns as soon as it no longer is."""

    lease_s = 20.0

    def __init__(self, for_s: float) -> None:
        self.until = time.monotonic() + for_s
        self.waits = 0

    def saturated(self) -> bool:
        return time.monotonic() < self.until

    async def room(self, timeout_s: float) -> None:
        self.waits += 1
        await asyncio.sleep(max(0.0, min(timeout_s, self.until - time.monotonic())))

    def capacity(self) -> int:
        return 0

    def budget(self, webhook: object) -> int:
        return 0

    def owner_budget(self, webhook: object) -> int:
        return 0

    def accept(self, rows: list[object]) -> None:
        pass


def _producer(handoff: Saturated | None) -> Producer:
    return Producer(None, Settings(), None, None, None, handoff=handoff)  # type: ignore[arg-type]


async def test_it_waits_while_the_dispatcher_is_saturated_and_goes_on_when_it_is_not() -> None:
    handoff = Saturated(for_s=0.3)
    started = time.monotonic()
    await _producer(handoff)._paced()
    assert 0.25 <= time.monotonic() - started < 1.0
    assert handoff.waits >= 1 and not handoff.saturated()


async def test_it_does_not_wait_when_there_is_room_or_no_dispatcher() -> None:
    started = time.monotonic()
    await _producer(Saturated(for_s=0.0))._paced()
    await _producer(None)._paced()
    assert time.monotonic() - started < 0.05


async def test_a_stopping_engine_does_not_wait() -> None:
    producer = _producer(Saturated(for_s=10.0))
    producer.stop()
    started = time.monotonic()
    await producer._paced()
    assert time.monotonic() - started < 0.05


async def test_it_waits_at_most_the_bound_then_evaluates_anyway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer_module, "PACE_MAX_WAIT_S", 0.2)
    started = time.monotonic()
    await _producer(Saturated(for_s=10.0))._paced()
    assert 0.15 <= time.monotonic() - started < 0.8
