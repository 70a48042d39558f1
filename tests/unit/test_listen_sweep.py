"""When the listen sweeper wakes (app.engine.listen.next_sweep_in_s): as a hold lapses, and at
least once a lease, so a hold made while it sleeps is seen before it can lapse."""

from __future__ import annotations

import pytest

from app.engine.listen import LAPSE_PAD_S, MIN_SLEEP_S, next_sweep_in_s

LEASE_S = 30.0


def test_with_no_hold_it_sleeps_one_lease() -> None:
    assert next_sweep_in_s(None, LEASE_S) == LEASE_S


def test_it_wakes_just_after_the_earliest_hold_lapses() -> None:
    assert next_sweep_in_s(4.0, LEASE_S) == pytest.approx(4.0 + LAPSE_PAD_S)


def test_never_longer_than_a_lease_nor_a_busy_loop() -> None:
    assert next_sweep_in_s(90.0, LEASE_S) == LEASE_S  # a hold renewed far ahead by another setting
    assert next_sweep_in_s(-5.0, LEASE_S) == MIN_SLEEP_S  # lapsed between the sweep and the answer


def test_a_hold_made_during_the_sleep_is_seen_before_it_lapses() -> None:
    # the sweeper sleeps one lease at t=0 with no hold; a hold made at t=h lapses at h + lease ≥ lease
    for made_at in (0.0, 0.5, 12.0, 29.9):
        woke_at = next_sweep_in_s(None, LEASE_S)
        assert woke_at <= made_at + LEASE_S
        # then that sweep sees it and sleeps until just after its lapse
        assert woke_at + next_sweep_in_s(made_at + LEASE_S - woke_at, LEASE_S) == pytest.approx(
            made_at + LEASE_S + LAPSE_PAD_S
        )
