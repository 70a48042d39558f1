"""Pacing: when delivery holds evaluation back. Pure bookkeeping, like app.policy.lanes.

The evaluator (app.engine.producer) does not start another batch while its process's dispatcher
is the bottleneck — what it would enqueue could only wait, and its entities, left pending, fold
the changes that keep coming. The dispatcher is the bottleneck when

- **its send slots are all taken** while attempts wait for one (`Lanes.saturated`), or
- **its recorder is a batch behind**: the attempts that finished and wait to be recorded fill a
  recording batch (RECORD_BATCH).

Neither may be one owner's doing. An owner whose receivers hang, answer slowly or fail, and an
owner whose many receivers answer at once while its attempts are slow to record (a 256 KiB body is
stored with each), must not pause the evaluation of everyone else's changes. So both count an
owner up to its share only: the slots count only owners with a slot of their own free
(app.policy.lanes), and the recorder's backlog counts an owner's finished attempts up to the same
share of a batch as its share of the send slots (`recording_share`: 125 of 500 with the
defaults, 64 of 256 slots). It takes four owners' full shares, as it does for the slots, to make
the process the bottleneck.

Fewer owners than that with enabled webhooks anywhere share the batch equally instead
(`Backlog.among`): an owner that alone has webhooks counts its whole backlog, two owners half a
batch each. Pausing evaluation then delays only owners whose share is full, and a marketplace
whose only subscriber is the operator's ERP keeps the pacing that stops it evaluating payloads a
newer state supersedes before they are sent."""

from __future__ import annotations

from app.policy.lanes import Owner


def recording_share(batch: int, owner_max_sending: int, max_sending: int) -> int:
    """How many of one owner's finished attempts count towards a recording batch: the owner's share
    of the send slots, of the batch (at least one, at most the batch)."""
    return max(1, min(batch, batch * owner_max_sending // max(1, max_sending)))


class Backlog:
    """Finished attempts waiting to be recorded, by owner (a seller, or None: the operator). It is
    `behind` when they fill `batch`, each owner counting `share` of its attempts at most: an equal
    part of the batch among the owners with enabled webhooks (`among`), never less than `owner_share`."""

    def __init__(self, batch: int, owner_share: int) -> None:
        self.batch = batch
        self.owner_share = max(1, owner_share)
        self._by_owner: dict[Owner, int] = {}
        self._total = 0
        self.share = self.owner_share  # until told how many owners there are: as many as it takes
        self._counted = 0  # the sum over owners of min(their attempts, share)

    def _share_among(self, owners: int) -> int:
        return max(self.owner_share, min(self.batch, self.batch // max(1, owners)))

    def among(self, owners: int) -> None:
        """`owners` owners have enabled webhooks now: each counts up to an equal part of the batch,
        never less than `owner_share` (so four owners and more count alike with the defaults)."""
        share = self._share_among(owners)
        if share != self.share:
            self.share = share
            self._counted = sum(min(held, share) for held in self._by_owner.values())

    def __len__(self) -> int:
        """Every attempt waiting, counted in full."""
        return self._total

    def add(self, owner: Owner) -> None:
        held = self._by_owner.get(owner, 0)
        if held < self.share:
            self._counted += 1
        self._by_owner[owner] = held + 1
        self._total += 1

    def remove(self, owner: Owner) -> None:
        """One of the owner's attempts was recorded (it must have been added)."""
        held = self._by_owner[owner] - 1
        if held < self.share:
            self._counted -= 1
        if held:
            self._by_owner[owner] = held
        else:
            del self._by_owner[owner]
        self._total -= 1

    def behind(self) -> bool:
        """The recorder is a batch behind, no owner counting beyond its share."""
        return self._counted >= self.batch
