"""Per-webhook lanes: pure bookkeeping, no database, no network, no clock."""

from app.lanes import Lanes, handoff_budget


def row(event_id: int, webhook_id: int) -> dict[str, int]:
    return {"id": event_id, "webhook_id": webhook_id}


def test_a_lane_starts_at_most_its_limit_and_the_next_one_when_one_is_done() -> None:
    # given 5 attempts of one webhook with live concurrency 2
    lanes = Lanes(max_sending=100)
    for i in range(5):
        lanes.add(row(i, 7), limit=2)
    # when started, then only 2 go, in claim order
    assert [r["id"] for r in lanes.take(7)] == [0, 1]
    assert lanes.take(7) == [] and lanes.waiting(7) == 3
    # and each finished attempt makes room for exactly one more
    lanes.done(7)
    assert [r["id"] for r in lanes.take(7)] == [2]


def test_the_process_bound_holds_lanes_back_and_resumes_them_in_order() -> None:
    # given a process that sends at most 2 at once, and two webhooks with room for more
    lanes = Lanes(max_sending=2)
    for i in range(3):
        lanes.add(row(i, 1), limit=10)
        lanes.add(row(10 + i, 2), limit=10)
    assert len(lanes.take(1)) == 2
    assert lanes.take(2) == []  # held back by the bound, not by its own limit
    # when attempts finish, then the held-back lanes go, in the order they were held back: the
    # first webhook's third attempt (held back first), then the second webhook's first
    lanes.done(1)
    lanes.done(1)
    assert [r["id"] for r in lanes.take_blocked()] == [2, 10]
    assert lanes.sending == 2


def test_a_429_halves_the_lane_at_once_and_a_recorded_limit_replaces_it() -> None:
    # given a webhook sending 8 at a time with more waiting
    lanes = Lanes(max_sending=100)
    for i in range(20):
        lanes.add(row(i, 3), limit=8)
    assert len(lanes.take(3)) == 8
    # when one answer is a 429, then the next round is half as wide
    lanes.halve(3)
    for _ in range(8):
        lanes.done(3)
    assert len(lanes.take(3)) == 4
    # and the limit recorded in the database replaces it
    lanes.set_limit(3, 1)
    assert lanes.limit(3) == 1


def test_dropping_returns_the_waiting_events_and_never_the_ones_sending() -> None:
    # given two webhooks with attempts sending and waiting
    lanes = Lanes(max_sending=100)
    for i in range(4):
        lanes.add(row(i, 1), limit=1)
        lanes.add(row(10 + i, 2), limit=1)
    lanes.take(1)
    lanes.take(2)
    # when one webhook's waiting attempts and one event of the other are dropped
    assert sorted(lanes.drop(webhooks={1})) == [1, 2, 3]
    assert lanes.drop(events={12}) == [12]
    # then the sending ones stay counted, and the rest still go in order
    assert lanes.sending == 2 and lanes.waiting(1) == 0
    lanes.done(2)
    assert [r["id"] for r in lanes.take(2)] == [11]


def test_idle_lanes_are_forgotten() -> None:
    lanes = Lanes(max_sending=100)
    lanes.add(row(1, 5), limit=1)
    lanes.take(5)
    lanes.done(5)
    assert len(lanes) == 0 and lanes.take(5) == []
    lanes.add(row(2, 6), limit=1)
    lanes.clear_waiting()
    assert len(lanes) == 0


def test_a_handoff_gets_what_a_claim_would_lease_and_nothing_while_failing() -> None:
    # a healthy webhook: its claim-ahead rounds, less what is leased anywhere
    assert handoff_budget(live_concurrency=10, leased=0, failing=False, ahead=25) == 250
    assert handoff_budget(live_concurrency=10, leased=240, failing=False, ahead=25) == 10
    assert handoff_budget(live_concurrency=2, leased=80, failing=False, ahead=25) == 0  # after a 429 halving
    # a failing one goes claimed round by round
    assert handoff_budget(live_concurrency=10, leased=0, failing=True, ahead=25) == 0
