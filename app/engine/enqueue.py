"""An evaluated batch into webhook events, in one transaction: judge the claimed entities against
what changed meanwhile (done, moved, held), lock their webhooks, reserve sequence numbers, skip
payloads identical to the last one enqueued, supersede the pending events they replace, record
budget breaches, and hand what this process may send at once to its dispatcher (`Handoff`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Protocol

import asyncpg

from app.config import Settings
from app.engine.batch import Due, Filtered, Outcome
from app.evaluation.execute import Breach, Encoded
from app.policy.envelope import encode_payload, event_name, new_event_id, payload_hash
from app.store import budget_breaches, delivery, enqueue
from app.store.pending import SubscribedWebhook

log = logging.getLogger(__name__)


class Handoff(Protocol):
    """Where freshly enqueued events go to be sent at once, skipping the NOTIFY and the claim
    round trips: this process's dispatcher. Events are inserted already leased to it. It also
    says when delivery is the bottleneck, which paces the evaluator (app.engine.producer)."""

    lease_s: float

    def capacity(self) -> int:
        """Events it takes now (0 while stopping)."""
        ...

    def budget(self, webhook: enqueue.HandoffWebhook) -> int:
        """Events of this webhook it may be leased now."""
        ...

    def owner_budget(self, webhook: enqueue.HandoffWebhook) -> int:
        """Events of this webhook's owner, over all the owner's webhooks, it may be leased now."""
        ...

    def accept(self, rows: list[delivery.ClaimedEvent]) -> None:
        """Committed events, leased to it, to send."""
        ...

    def saturated(self) -> bool:
        """Delivery is the bottleneck: every send slot is taken with attempts waiting for one, or
        recording lags a batch behind, and no owner alone makes it so (app.policy.pacing): what
        it is handed now only waits."""
        ...

    async def room(self, timeout_s: float) -> None:
        """Returns when it is no longer saturated, or after `timeout_s`."""
        ...

    def owners_subscribed(self, owners: int) -> None:
        """How many owners have enabled webhooks, as the evaluator's last claim found: what is
        one owner's share when they are few (app.policy.pacing)."""
        ...


async def enqueue_batch(
    pool: asyncpg.Pool,
    settings: Settings,
    handoff: Handoff | None,
    due: list[Due],
    webhooks: list[SubscribedWebhook],
    payloads: dict[tuple[int, str, int], Outcome],
) -> bool:
    """Enqueue the outcomes of these claimed entities in one transaction (see the module's
    docstring); True when some entity changed while it was evaluated and is due again at a time
    the claim did not see."""
    skip_identical = {h.id: h.skip_identical_payloads for h in webhooks}
    breach_streaks = {h.id: h.budget_breaches for h in webhooks}
    by_key = {d.key: d for d in due}
    # Webhooks sharing a query share one payload: its hash was computed once (`Batch.outcomes`).
    candidates = [
        enqueue.Candidate(*k, "filtered", None, False) if isinstance(o, Filtered)
        else enqueue.Candidate(*k, "breach", None, False) if isinstance(o, Breach)
        else enqueue.Candidate(*k, "payload", o.hash, skip_identical[k[0]])
        for k, o in sorted(payloads.items())
    ]
    claimed = [enqueue.ClaimedVersion(*d.key, d.version, d.action.value) for d in due]
    async with pool.acquire() as conn, conn.transaction():
        # Every webhook with a payload is locked, also those whose entities turn out not to be
        # sendable: the statement judges the entities (`enqueue.Verdict`) and reserves the
        # sequence numbers of what is sent, superseding what it replaces, in one round trip.
        prep = await enqueue.prepare_enqueue(conn, claimed, list({k[0] for k in payloads}), candidates)
        verdicts = {v.key: v for v in prep.verdicts}
        done = {k for k, v in verdicts.items() if v.verdict == "done"}
        moved = {k for k, v in verdicts.items() if v.verdict != "done"}
        sendable = {k for k, v in verdicts.items() if v.sendable}
        alive = {w.id for w in prep.webhooks}  # a webhook deleted since the claim gets nothing
        outputs = {k: p for k, p in payloads.items() if (k[1], k[2]) in sendable and k[0] in alive}
        config: dict[int, enqueue.HandoffWebhook] = {w.id: w for w in prep.webhooks} if handoff is not None else {}
        # A breach is an event like any other — it takes the next sequence number — but it
        # is recorded FAILED, with its error, and never sent: nothing to skip or supersede.
        breaches = {k: o for k, o in outputs.items() if isinstance(o, Breach)}
        encoded = {k: o for k, o in outputs.items() if isinstance(o, Encoded)}
        # A payload the filter did not match is recorded SKIPPED ('filtered'): it takes no
        # sequence number, supersedes nothing and leaves the skip-identical hash alone (that
        # stays the hash of the last payload enqueued for the receiver).
        filtered = {k: o.encoded for k, o in outputs.items() if isinstance(o, Filtered)}
        texts = {k: o.text for k, o in encoded.items()}
        hashes = {k: o.hash for k, o in encoded.items()}
        counts: dict[int, int] = defaultdict(int)
        for k in outputs:
            if k not in filtered:
                counts[k[0]] += 1
        if counts != prep.reserved:  # the statement and this code count the same candidates
            raise RuntimeError(f"enqueue: reserved {prep.reserved} sequence numbers for {dict(counts)}")
        firsts, previous, superseded = prep.firsts, prep.previous_hashes, prep.superseded
        skipped = {
            c[:3] for c in candidates if c.kind == "payload" and c[:3] in encoded
            and enqueue.is_skipped(c, previous.get(c[:3]))
        }
        hashed = [k for k in encoded if k not in skipped]  # the hashes later payloads compare with
        clocks = {c.key: c for c in superseded}
        # Events this process may send at once (handoff): within the webhook's claim-ahead
        # budget and the dispatcher's room, and not in a retry backoff inherited from the
        # event they supersede (`enqueue.may_hand_off`). Within its owner's share of held
        # events too (app.policy.lanes).
        room = {w: handoff.budget(c) for w, c in config.items() if c.enabled} if handoff else {}
        owner_of = {w: c.seller_id for w, c in config.items()}
        owner_room = {c.seller_id: handoff.owner_budget(c) for c in config.values()} if handoff else {}
        capacity = handoff.capacity() if handoff else 0
        rows: list[enqueue.NewEvent] = []
        failed: list[budget_breaches.FailedEvaluation] = []
        next_seq = dict(firsts)
        for k in sorted(outputs, key=lambda k: (k[0], k[1], k[2])):
            d = by_key[(k[1], k[2])]
            if k in filtered:
                rows.append(
                    enqueue.NewEvent(
                        new_event_id(), k[0], k[1], k[2], event_name(d.entity_type, d.action.value), None,
                        "skipped", filtered[k].text, filtered[k].hash, d.last_change_at, 0, None, True, False,
                        "filtered",
                    )
                )
                continue
            seq = next_seq[k[0]]
            next_seq[k[0]] = seq + 1
            if k in breaches:
                failed.append(_failed_evaluation(k, d, seq, breaches[k]))
                continue
            name = event_name(d.entity_type, d.action.value)
            if k in skipped:
                rows.append(
                    enqueue.NewEvent(
                        new_event_id(), k[0], k[1], k[2], name, seq, "skipped", texts[k], hashes[k],
                        d.last_change_at, 0, None, True, False, "identical",
                    )
                )
                continue
            clock = clocks.get(k)
            leased = (
                capacity > 0
                and room.get(k[0], 0) > 0
                and owner_room[owner_of[k[0]]] > 0
                and enqueue.may_hand_off(clock)
            )
            if leased:
                capacity -= 1
                room[k[0]] -= 1
                owner_room[owner_of[k[0]]] -= 1
            rows.append(
                enqueue.pending_event(
                    public_id=new_event_id(),
                    webhook_id=k[0],
                    entity_type=k[1],
                    entity_id=k[2],
                    event=name,
                    sequence=seq,
                    payload=texts[k],
                    payload_hash=hashes[k],
                    changed_at=d.last_change_at,
                    clock=clock,
                    leased=leased,
                )
            )
        # A moved entity's remaining changes all came after the state claimed: its max delay
        # counts from there, or a steadily changing entity would be due again at once, forever.
        restarted = [(*k, by_key[k].last_change_at) for k in moved]
        leased_ids = await enqueue.finish_enqueue(
            conn,
            rows,
            handoff.lease_s if handoff else 0.0,
            superseded,
            [(k[0], k[1], k[2], hashes[k]) for k in hashed],
            list(done),
            restarted,
            debounce_ms=settings.debounce_ms,
            max_delay_ms=settings.max_delay_ms,
        )
        handed = [
            _delivery_row(e, leased_ids[e.public_id], config[e.webhook_id])
            for e in rows
            if e.public_id in leased_ids
        ]
        streaks = _budget_streaks(breaches, {k[0] for k in encoded} | {k[0] for k in filtered}, breach_streaks)
        if failed or streaks:
            disabled = await budget_breaches.record_budget_outcomes(
                conn, failed, streaks, settings.budget_breaches_to_disable
            )
            for webhook_id, reason in disabled:
                log.warning("webhook %s disabled: %s", webhook_id, reason)
    if handed and handoff is not None:  # committed: theirs to send
        handoff.accept(handed)
    return bool(restarted)


def _failed_evaluation(
    k: tuple[int, str, int], d: Due, sequence: int, breach: Breach
) -> budget_breaches.FailedEvaluation:
    # What the event log shows as its payload: the error, shaped as a GraphQL result.
    payload = encode_payload({"data": None, "errors": [{"message": breach.error}]})
    return budget_breaches.FailedEvaluation(
        public_id=new_event_id(),
        webhook_id=k[0],
        entity_type=k[1],
        entity_id=k[2],
        event=event_name(d.entity_type, d.action.value),
        sequence=sequence,
        payload=payload,
        payload_hash=payload_hash(payload),
        changed_at=d.last_change_at,
        reason=breach.reason,
        error=breach.error,
    )


def _budget_streaks(
    breaches: Mapping[tuple[int, str, int], Breach], succeeded: set[int], streaks: Mapping[int, int]
) -> list[budget_breaches.BudgetStreak]:
    """What this batch does to each webhook's run of consecutive budget breaches: a webhook that
    breached on any entity extends it (once per batch: one breaching run fails many entities);
    one that only succeeded ends it, if it had one (as read with the webhooks; the statement
    checks again)."""
    last: dict[int, Breach] = {}
    for k, breach in sorted(breaches.items()):
        if k[0] not in last or (breach.evaluated and not last[k[0]].evaluated):
            last[k[0]] = breach
    ended = sorted(w for w in succeeded - last.keys() if streaks.get(w, 0) > 0)
    return [budget_breaches.BudgetStreak(w, breach.error) for w, breach in sorted(last.items())] + [
        budget_breaches.BudgetStreak(w, None) for w in ended
    ]


def _delivery_row(event: enqueue.NewEvent, event_id: int, webhook: enqueue.HandoffWebhook) -> delivery.ClaimedEvent:
    """An event inserted leased, as a claim returns one (a pending event: it has a sequence)."""
    assert event.sequence is not None
    return delivery.ClaimedEvent(
        id=event_id,
        public_id=event.public_id,
        webhook_id=event.webhook_id,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        event=event.event,
        sequence=event.sequence,
        payload=event.payload,
        changed_at=event.changed_at,
        attempts=event.attempts,
        **webhook.delivery,
    )
