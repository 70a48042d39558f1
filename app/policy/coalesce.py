"""Folding a burst of changes to one entity into one action, and when it is due. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from app.types import Action

_FOLD: dict[tuple[Action, Action], Action | None] = {
    (Action.CREATED, Action.CREATED): Action.CREATED,
    (Action.CREATED, Action.UPDATED): Action.CREATED,
    (Action.CREATED, Action.DELETED): None,  # never seen by anyone: nothing at all
    (Action.UPDATED, Action.CREATED): Action.UPDATED,
    (Action.UPDATED, Action.UPDATED): Action.UPDATED,
    (Action.UPDATED, Action.DELETED): Action.DELETED,
    (Action.DELETED, Action.CREATED): Action.UPDATED,  # the id came back: subscribers knew it, so it changed
    (Action.DELETED, Action.UPDATED): Action.UPDATED,
    (Action.DELETED, Action.DELETED): Action.DELETED,
}


def fold(previous: Action | None, actions: Iterable[Action]) -> Action | None:
    """Fold `actions` (in commit order) onto the pending action `previous` (None: nothing pending).
    created+updated → created; updated+deleted → deleted; created+deleted → None."""
    state = previous
    for action in actions:
        state = action if state is None else _FOLD[(state, action)]
    return state


def due_at(first_change_at: datetime, last_change_at: datetime, debounce_ms: int, max_delay_ms: int) -> datetime:
    """When a pending entity is evaluated: once quiet for `debounce_ms`, but no later than
    `max_delay_ms` after its first pending change."""
    return min(
        last_change_at + timedelta(milliseconds=debounce_ms),
        first_change_at + timedelta(milliseconds=max_delay_ms),
    )
