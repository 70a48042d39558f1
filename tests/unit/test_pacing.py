"""Delivery paces evaluation. The rule's bookkeeping (app.policy.pacing): the recorder's backlog
counts each owner up to its share only. The evaluator's wait (app.engine.producer.Producer._paced):
it does not start a batch while its process's dispatcher is saturated, stops waiting when it is
not, when the engine stops, or after PACE_MAX_WAIT_S; the hand-off there is a stand-in that is
saturated for a set time."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import Settings
from app.engine import producer as producer_module
from app.engine.producer import Producer
from app.policy.pacing import Backlog, recording_share

# -- the recorder's backlog, by owner (app.policy.pacing) ----------------------------------------


@pytest.mark.parametrize(
    ("batch", "owner_max_sending", "max_sending", "share"),
    [
        (500, 64, 256, 125),  # the defaults: an owner's quarter of the slots, a quarter of a batch
        (500, 256, 256, 500),  # an owner allowed every slot may fill a batch alone
        (500, 1000, 256, 500),  # never more than the batch
        (10, 1, 256, 1),  # at least one
    ],
)
def test_an_owner_counts_towards_a_recording_batch_as_it_does_towards_the_send_slots(
    batch: int, owner_max_sending: int, max_sending: int, share: int
) -> None:
    assert recording_share(batch, owner_max_sending, max_sending) == share


def test_one_owner_alone_never_puts_the_recorder_behind() -> None:
    # given a batch of 8, each owner counting 2 at most
    backlog = Backlog(batch=8, owner_share=2)
    # when one owner's outcomes wait, however many
    for _ in range(100):
        backlog.add(7)
    # then the recorder is not behind, though every one of them is counted as waiting
    assert not backlog.behind() and len(backlog) == 100
    # when three more owners have their share waiting (the operator is one of them)
    for owner in (1, 2, None):
        backlog.add(owner)
        backlog.add(owner)
    # then it is
    assert backlog.behind() and len(backlog) == 106


def test_the_recorder_catches_up_as_outcomes_are_recorded() -> None:
    # given four owners with 3 outcomes each waiting, 2 of each counted
    backlog = Backlog(batch=8, owner_share=2)
    for owner in (1, 2, 3, 4):
        for _ in range(3):
            backlog.add(owner)
    assert backlog.behind()
    # when owner 1's outcome beyond its share is recorded, then nothing changes
    backlog.remove(1)
    assert backlog.behind()
    # when one within its share is, then it is no longer behind
    backlog.remove(1)
    assert not backlog.behind()
    # and when every outcome is recorded, nothing is left of it
    backlog.remove(1)
    for owner in (2, 3, 4):
        for _ in range(3):
            backlog.remove(owner)
    assert len(backlog) == 0 and not backlog.behind()


def test_an_owner_that_alone_has_webhooks_counts_its_whole_backlog() -> None:
    # given a batch of 8, each owner counting 2 at most when there are many, one owner's 6 waiting
    backlog = Backlog(batch=8, owner_share=2)
    for _ in range(6):
        backlog.add(None)
    assert not backlog.behind() and backlog.share == 2
    # when it turns out to be the only owner with webhooks
    backlog.among(1)
    # then all of its outcomes count, and 2 more put the recorder behind
    assert backlog.share == 8 and not backlog.behind()
    backlog.add(None)
    backlog.add(None)
    assert backlog.behind()
    # when a second owner registers a webhook, then the first counts half a batch: not behind
    backlog.among(2)
    assert backlog.share == 4 and not backlog.behind()
    # and the second's outcomes count up to the other half
    for _ in range(4):
        backlog.add(5)
    assert backlog.behind()
    # when the first's are recorded, it is no longer behind
    for _ in range(8):
        backlog.remove(None)
    assert not backlog.behind() and len(backlog) == 4


@pytest.mark.parametrize(
    ("owners", "share"), [(0, 500), (1, 500), (2, 250), (3, 166), (4, 125), (5, 125), (10_000, 125)]
)
def test_few_owners_share_the_batch_equally_and_many_count_their_share_of_the_slots(owners: int, share: int) -> None:
    backlog = Backlog(batch=500, owner_share=recording_share(500, 64, 256))
    backlog.among(owners)
    assert backlog.share == share


def test_the_share_counts_what_waits_already_when_the_owners_change() -> None:
    # given two owners with 5 each waiting, and many owners: 2 of each counted
    backlog = Backlog(batch=8, owner_share=2)
    for owner in (1, 2):
        for _ in range(5):
            backlog.add(owner)
    assert not backlog.behind()
    # when there turn out to be two: 4 of each count, a batch
    backlog.among(2)
    assert backlog.behind()
    # when many again: 2 of each
    backlog.among(100)
    assert not backlog.behind()
    # and what is recorded still comes off the right count
    for owner in (1, 2):
        for _ in range(5):
            backlog.remove(owner)
    backlog.among(1)
    assert len(backlog) == 0 and not backlog.behind()


# -- the evaluator's wait (app.engine.producer) ---------------------------------------------------


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

    def owners_subscribed(self, owners: int) -> None:
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
