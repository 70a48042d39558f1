"""Per-webhook lanes: the attempts one process holds for each webhook, started at most `limit`
at a time per webhook and at most `max_sending` over all of them. Pure bookkeeping: the
dispatcher starts what `take` hands out and reports each finished attempt with `done`."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Lane:
    limit: int
    sending: int = 0
    waiting: deque[Mapping[str, Any]] = field(default_factory=deque)


def handoff_budget(live_concurrency: int, leased: int, failing: bool, ahead: int) -> int:
    """How many fresh events of a webhook may be leased to this process as they are enqueued:
    what a claim would lease it (`ahead` rounds of its live concurrency, less the events leased
    anywhere), and none while it is failing — a failing webhook's attempts go one claimed round
    at a time, each with its configuration read afresh."""
    return 0 if failing else max(0, live_concurrency * ahead - leased)


class Lanes:
    """Rows are mappings with an `id` (the event) and a `webhook_id`."""

    def __init__(self, max_sending: int) -> None:
        self.max_sending = max_sending
        self.sending = 0  # attempts started and not yet done, over all lanes
        self._lanes: dict[int, _Lane] = {}
        self._blocked: dict[int, None] = {}  # lanes held back by max_sending, served in order

    def __len__(self) -> int:
        return len(self._lanes)

    def add(self, row: Mapping[str, Any], limit: int) -> None:
        """Queue a claimed attempt; `limit` is the webhook's live concurrency as claimed."""
        lane = self._lanes.get(row["webhook_id"])
        if lane is None:
            lane = self._lanes[row["webhook_id"]] = _Lane(limit)
        lane.limit = limit
        lane.waiting.append(row)

    def set_limit(self, webhook_id: int, limit: int) -> None:
        if (lane := self._lanes.get(webhook_id)) is not None:
            lane.limit = max(1, limit)

    def halve(self, webhook_id: int) -> None:
        """A 429: the webhook's next attempts go at half the rate at once, before it is recorded."""
        if (lane := self._lanes.get(webhook_id)) is not None:
            lane.limit = max(1, lane.limit // 2)

    def waiting(self, webhook_id: int) -> int:
        lane = self._lanes.get(webhook_id)
        return len(lane.waiting) if lane else 0

    def held(self, webhook_id: int) -> int:
        """Its attempts waiting or sending."""
        lane = self._lanes.get(webhook_id)
        return len(lane.waiting) + lane.sending if lane else 0

    def limit(self, webhook_id: int) -> int:
        lane = self._lanes.get(webhook_id)
        return lane.limit if lane else 0

    def take(self, webhook_id: int) -> list[Mapping[str, Any]]:
        """The webhook's waiting attempts to start now, counted as sending."""
        lane = self._lanes.get(webhook_id)
        if lane is None:
            return []
        started: list[Mapping[str, Any]] = []
        while lane.waiting and lane.sending < lane.limit:
            if self.sending >= self.max_sending:
                self._blocked.setdefault(webhook_id, None)
                break
            started.append(lane.waiting.popleft())
            lane.sending += 1
            self.sending += 1
        self._forget_if_idle(webhook_id)
        return started

    def take_blocked(self) -> list[Mapping[str, Any]]:
        """Attempts of lanes the process-wide bound held back, now that there is room."""
        started: list[Mapping[str, Any]] = []
        while self._blocked and self.sending < self.max_sending:
            webhook_id = next(iter(self._blocked))
            del self._blocked[webhook_id]
            started.extend(self.take(webhook_id))
        return started

    def done(self, webhook_id: int) -> None:
        """One started attempt of this webhook finished."""
        self.sending -= 1
        if (lane := self._lanes.get(webhook_id)) is not None:
            lane.sending -= 1
            self._forget_if_idle(webhook_id)

    def drop(self, *, webhooks: Collection[int] = (), events: Collection[int] = ()) -> list[int]:
        """Forget the waiting (not started) attempts of these webhooks, or these events; returns
        their event ids."""
        dropped: list[int] = []
        for webhook_id, lane in list(self._lanes.items()):
            if webhook_id in webhooks:
                dropped.extend(row["id"] for row in lane.waiting)
                lane.waiting.clear()
            elif events:
                dropped.extend(row["id"] for row in lane.waiting if row["id"] in events)
                lane.waiting = deque(row for row in lane.waiting if row["id"] not in events)
            self._forget_if_idle(webhook_id)
        return dropped

    def clear_waiting(self) -> None:
        for webhook_id, lane in list(self._lanes.items()):
            lane.waiting.clear()
            self._forget_if_idle(webhook_id)

    def _forget_if_idle(self, webhook_id: int) -> None:
        lane = self._lanes.get(webhook_id)
        if lane is not None and not lane.waiting and not lane.sending:
            del self._lanes[webhook_id]
            self._blocked.pop(webhook_id, None)
