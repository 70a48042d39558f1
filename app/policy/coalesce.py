"""Folding a burst of changes to one entity into one action. Pure.

The store applies the same rule in SQL when it ingests (`fold_rules`, migration 0021); the
integration test of the ingest checks the two agree on every short sequence. When a folded entity
comes due is the store's rule alone (`hookql_due_at`, migration 0025)."""

from __future__ import annotations

from collections.abc import Iterable

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


def fold_rules() -> dict[str, str | None]:
    """The fold table as the store's ingest applies it in SQL (migration 0021, `hookql_fold`):
    'previous+next' → the folded action's value, None where the two cancel out. Nothing pending
    takes the next action as it is, there as in `fold`."""
    return {f"{a.value}+{b.value}": c.value if c else None for (a, b), c in _FOLD.items()}

