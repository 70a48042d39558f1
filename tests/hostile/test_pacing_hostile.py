"""A hostile owner against pacing (app.policy.pacing): delivery holds evaluation back while its
process's dispatcher is the bottleneck, and no owner alone may make it look so. Here a seller's
webhooks answer at once and each of its attempts is slow to record — as a 256 KiB body, stored
with every attempt, makes it (500 such rows took 2.6–4.9 s to insert on the 2-core dev machine,
2026-12-02): its finished attempts queue for the recorder, a batch and more of them. Another
seller's changes must still be evaluated, and delivered, on time.

The recorder's slowness is a trigger on `webhook_attempts` that sleeps for the attacker's rows
only, so the backlog is the attacker's alone, and steady. Run alone with
`python -m pytest -q tests/hostile/test_pacing_hostile.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.engine.dispatcher import RECORD_BATCH
from app.policy.ids import encode as global_id
from tests.support.engine_harness import add_webhook, bodies, fast, running_engine, wait_until
from tests.support.receivers import Receiver

pytestmark = pytest.mark.hostile

ATTACKER = 3  # the fixtures' seller with the most invoices (34)
ATTACKER_WEBHOOKS = 8  # × 34 invoices, rewritten 5 times a second: outcomes far faster than they are recorded
VICTIM = 1
VICTIM_INVOICES = (11, 15, 20, 24)  # seller 1's
RECORD_SLEEP_S = 0.01  # per attacker attempt recorded: a batch of 500 takes 5 s
CHANGE_EVERY_S = 0.2  # the attacker rewrites all its invoices this often
SPACING_S = 1.5  # between the victim's changes: they meet the recorder at different points of its rounds

SLOW_RECORDING = """
CREATE FUNCTION slow_attacker_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({sleep_s}); RETURN NEW; END $$;
CREATE TRIGGER slow_attacker_attempt BEFORE INSERT ON webhook_attempts FOR EACH ROW
WHEN (NEW.webhook_id = ANY('{{{ids}}}'::bigint[])) EXECUTE FUNCTION slow_attacker_attempt();
"""


@contextlib.asynccontextmanager
async def attacker_changing(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The attacker rewrites every one of its invoices, again and again, while the block runs."""

    async def loop() -> None:
        n = 0
        while True:
            n += 1
            await pool.execute("UPDATE invoices SET status = $2 WHERE seller_id = $1", ATTACKER,
                               "paid" if n % 2 else "refunded")
            await asyncio.sleep(CHANGE_EVERY_S)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _delivered(receiver: Receiver, invoice_id: int) -> bool:
    wanted = global_id("Invoice", invoice_id)
    return any(b["entity"]["id"] == wanted for b in bodies(receiver.received))


async def test_an_owner_whose_attempts_flood_the_recorder_does_not_hold_back_other_owners_evaluation(
    fixture_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app")
    fast_receiver = await Receiver().start()  # the attacker's: answers every request at once
    victim_receiver = await Receiver().start()
    settings = fast()
    try:
        async with running_engine(fixture_database_url, settings) as run:
            pool, dispatcher = run.pool, run.engine.dispatcher
            # given a seller with 8 webhooks at a receiver that answers at once, each attempt of
            # theirs slow to record, and another seller with one webhook
            hooks = [
                (await add_webhook(pool, fast_receiver.url, seller_id=ATTACKER, concurrency=100,
                                   live_concurrency=100))[0]
                for _ in range(ATTACKER_WEBHOOKS)
            ]
            await add_webhook(pool, victim_receiver.url, seller_id=VICTIM)
            await pool.execute(SLOW_RECORDING.format(sleep_s=RECORD_SLEEP_S, ids=",".join(map(str, hooks))))
            latencies: list[float] = []
            peaks: list[int] = []  # the recorder's backlog at its highest while each change is on its way

            def delivered(invoice_id: int) -> bool:
                peaks[-1] = max(peaks[-1], dispatcher.recording_backlog)
                return _delivered(victim_receiver, invoice_id)

            async with attacker_changing(pool):
                # when the attacker's finished attempts wait for the recorder, a batch and more
                await wait_until(lambda: dispatcher.recording_backlog >= RECORD_BATCH, timeout_s=60)
                # and meanwhile the other seller's invoices change, one after another (each a
                # fresh (webhook, entity): none waits for its previous event to be recorded)
                loop = asyncio.get_running_loop()
                for invoice_id in VICTIM_INVOICES:
                    peaks.append(dispatcher.recording_backlog)
                    changed_at = loop.time()
                    await pool.execute("UPDATE invoices SET status = 'paid' WHERE id = $1", invoice_id)
                    await wait_until(lambda i=invoice_id: delivered(i), timeout_s=30, interval_s=0.005)
                    latencies.append(loop.time() - changed_at)
                    await asyncio.sleep(SPACING_S)
            await pool.execute("DROP TRIGGER slow_attacker_attempt ON webhook_attempts")
    finally:
        await fast_receiver.stop()
        await victim_receiver.stop()
    # then each of the other seller's changes arrived within its debounce plus 1 s
    bound_s = settings.debounce_ms / 1000 + 1.0
    assert max(latencies) <= bound_s, (
        f"deliveries took {[round(s, 2) for s in latencies]} s (bound {bound_s} s); recorder backlog {peaks}"
    )
    # while the attack was on: the attacker's attempts waited for the recorder, a batch and more
    # of them, as each change was on its way
    assert min(peaks) >= RECORD_BATCH, peaks
    # and nothing logged an error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
