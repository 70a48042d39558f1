"""Folding a burst of actions for one entity, checked pairwise and against a model of the row's life.
(The basic fold cases live in test_policy.py; the due time is SQL's: tests/integration/test_ingest.py.)"""

import itertools

import pytest

from app.policy.coalesce import fold
from app.types import Action

C, U, D = Action.CREATED, Action.UPDATED, Action.DELETED


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        (C, C, C),
        (C, U, C),  # created+updated → created
        (C, D, None),  # created+deleted → nothing at all
        (U, C, U),
        (U, U, U),
        (U, D, D),  # updated+deleted → deleted
        (D, C, U),  # the id came back: subscribers knew it, so it changed
        (D, U, U),
        (D, D, D),
    ],
)
def test_every_pair(first: Action, then: Action, expected: Action | None) -> None:
    assert fold(None, [first, then]) == expected
    assert fold(first, [then]) == expected  # the same when `first` is already pending


def _valid_histories(max_length: int) -> list[tuple[bool, list[Action]]]:
    """Every (existed_before, actions) a single row can really go through: created only when
    absent, updated/deleted only when present."""
    histories = []
    for existed in (False, True):
        for length in range(1, max_length + 1):
            for actions in itertools.product((C, U, D), repeat=length):
                exists = existed
                for action in actions:
                    if (action is C) == exists:
                        break
                    exists = action is not D
                else:
                    histories.append((existed, list(actions)))
    return histories


@pytest.mark.parametrize(("existed_before", "actions"), _valid_histories(6))
def test_the_fold_says_what_a_subscriber_who_only_saw_the_ends_would_see(
    existed_before: bool, actions: list[Action]
) -> None:
    # given the row's existence before the burst (subscribers knew it) and after it
    exists_after = actions[-1] is not D
    expected = {
        (False, True): C,
        (True, True): U,
        (True, False): D,
        (False, False): None,  # born and gone inside the burst: nothing at all
    }[(existed_before, exists_after)]
    # when the burst is folded, in one go or split anywhere (changes arrive in batches)
    assert fold(None, actions) == expected
    for cut in range(len(actions) + 1):
        assert fold(fold(None, actions[:cut]), actions[cut:]) == expected


def test_fold_accepts_any_iterable() -> None:
    assert fold(None, iter([C, U, U])) is C

