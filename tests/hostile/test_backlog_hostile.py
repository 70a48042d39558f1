"""A hostile owner against claims: a seller whose receivers hang piles up due events — 15,000,
three times the window of earliest due events a claim once looked at — all due before anything
another owner has. Another owner's event that comes due must still be claimed and
delivered on time: a claim that looked only at the earliest due events would see the attacker's
alone, for as long as its backlog lasts (on the claim before migration 0028: never, within 15 s).

The events are inserted as a process leaves them when it does not send them itself: a retry come
due, a crashed process's backlog (a fresh event is handed to its own process's dispatcher and
needs no claim). Run alone with `python -m pytest -q tests/hostile/test_backlog_hostile.py`."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.engine_harness import add_webhook, due_events, fast, running_engine, wait_until
from tests.support.receivers import HangingReceiver, Receiver

pytestmark = pytest.mark.hostile

ATTACKER = 3
VICTIM = 1
BACKLOG = 15_000  # the attacker's due events
ATTACKER_WEBHOOKS = 2
VICTIM_EVENTS = 3  # come due one after another, each after the attacker's backlog is in place
BOUND_S = 2.0  # from coming due to delivered (a claim is woken at least once a second)


async def test_a_sellers_backlog_of_due_events_does_not_hold_back_another_owners_due_event(
    fixture_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app")
    hanging = await HangingReceiver(cancel_abandoned=True).start()
    victim_receiver = await Receiver().start()
    latencies: list[float] = []
    try:
        async with running_engine(fixture_database_url, fast()) as run:
            pool = run.pool
            try:
                # given a seller whose receivers never answer, with a backlog of due events that
                # are due since a minute ago, more than a claim looks at
                for _ in range(ATTACKER_WEBHOOKS):
                    hook, _ = await add_webhook(pool, hanging.url, seller_id=ATTACKER, timeout_seconds=30)
                    await due_events(pool, hook, BACKLOG // ATTACKER_WEBHOOKS, due_ago_s=60)
                await wait_until(lambda: hanging.in_flight >= 1, timeout_s=15)
                victim, _ = await add_webhook(pool, victim_receiver.url, seller_id=VICTIM)
                loop = asyncio.get_running_loop()
                for n in range(VICTIM_EVENTS):
                    # when another seller's event comes due
                    due_at = loop.time()
                    await due_events(pool, victim, 1, first_entity=1 + n)
                    # then it is delivered within the bound
                    try:
                        await wait_until(lambda n=n: len(victim_receiver.received) > n, timeout_s=15, interval_s=0.005)
                    except AssertionError:  # not within wait_until's 15 s
                        latencies.append(float("inf"))
                        break
                    latencies.append(loop.time() - due_at)
                pending = await pool.fetchval(
                    "SELECT count(*) FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id "
                    "WHERE w.seller_id = $1 AND e.status = 'pending'", ATTACKER)
            finally:
                await hanging.release()
    finally:
        await hanging.stop()
        await victim_receiver.stop()
    assert len(latencies) == VICTIM_EVENTS and max(latencies) <= BOUND_S, (
        f"the other seller's events took {[round(s, 2) for s in latencies]} s (bound {BOUND_S} s)"
    )
    # while the attacker's backlog stood: hardly any of it was sent
    assert pending >= BACKLOG - 100, pending
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
