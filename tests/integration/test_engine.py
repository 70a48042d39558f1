"""End to end: plain SQL writes → the engine → a real receiver."""


import asyncpg
from standardwebhooks import Webhook

from tests.support.engine_harness import add_webhook, bodies, events, fast, running_engine, settled, wait_until
from tests.support.receivers import Receiver


async def test_an_update_is_delivered_signed_with_the_latest_state(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, secret = await add_webhook(run.pool, receiver.url + "/erp", headers=[{"name": "X-Erp", "value": "7"}])
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 1")
            await receiver.wait_for(1)
            await wait_until(lambda: _delivered(run.pool, hook, 1))
    finally:
        await receiver.stop()
    [got] = receiver.received
    body = Webhook(secret).verify(got.body, got.headers)
    assert body["event"] == "invoice.updated" and body["event_name"] == "update"
    assert body["entity"] == {"type": "Invoice", "id": "SW52b2ljZTox"}
    assert body["payload"]["data"]["node"]["status"] == "CANCELLED"
    assert body["sequence"] == 1 and body["created_at"].endswith("Z")
    assert got.headers["X-Erp"] == "7" and got.headers["Webhook-Sequence"] == "1"
    assert got.headers["webhook-id"] == body["id"] == got.headers["Idempotency-Key"]


async def _delivered(pool: asyncpg.Pool, hook: int, n: int) -> bool:
    return (
        await pool.fetchval("SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND status = 'delivered'", hook)
        >= n
    )


async def test_a_burst_is_one_delivery_with_the_final_state(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url, fast(debounce_ms=500, max_delay_ms=30_000)) as run:
            await add_webhook(run.pool, receiver.url)
            async with run.pool.acquire() as conn:
                for i in range(500):
                    await conn.execute("UPDATE invoice_line_items SET quantity = $1 WHERE id = 1", i % 7 + 1)
            await receiver.wait_for(1)
            await wait_until(lambda: settled(run.pool))  # every change processed: nothing more can arrive
            final = await run.pool.fetchval("SELECT quantity FROM invoice_line_items WHERE id = 1")
    finally:
        await receiver.stop()
    [body] = bodies(receiver.received)
    assert body["payload"]["data"]["node"]["lineItems"][0]["quantity"] == final


async def test_an_unselected_column_change_is_skipped(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            hook, _ = await add_webhook(run.pool, receiver.url)
            await run.pool.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 2")
            await receiver.wait_for(1)
            await run.pool.execute("UPDATE invoices SET currency = currency WHERE id = 2")  # no selected field changes
            await wait_until(lambda: _count(run.pool, hook, "skipped", 1))
            rows = await events(run.pool, hook)
    finally:
        await receiver.stop()
    assert [r["status"] for r in rows] == ["delivered", "skipped"]
    assert len(receiver.received) == 1


async def _count(pool: asyncpg.Pool, hook: int, status: str, n: int) -> bool:
    return (
        await pool.fetchval("SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND status = $2", hook, status)
        >= n
    )
