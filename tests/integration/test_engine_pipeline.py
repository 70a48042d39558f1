"""From a committed write to an event: capture, folding, debounce, evaluation, visibility."""

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from app.api.context import make_context
from app.api.schema import schema
from app.engine.batch import Due, Outcome
from app.engine.producer import Producer
from app.engine.wakeups import Wakeups
from app.store import pending
from app.types import Action, EntityType
from tests.support.engine_harness import add_webhook, events, fast, running_engine, settled, wait_until
from tests.support.receivers import Receiver

SHIPMENTS_QUERY = "query($id: ID!) { invoice(id: $id) { status shipments { carrier } } }"
STATUS_QUERY = "query($id: ID!) { invoice(id: $id) { status } }"


async def _changes(pool: asyncpg.Pool) -> list[tuple[str, int, str]]:
    rows = await pool.fetch("SELECT entity_type, entity_id, action FROM changes ORDER BY id")
    return [(r["entity_type"], r["entity_id"], r["action"]) for r in rows]


async def test_owned_rows_are_changes_of_their_owner(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    await p.execute(
        "INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price) VALUES (1, NULL, 1, 1)"
    )
    await p.execute("INSERT INTO shipments (invoice_id, carrier) VALUES (2, 'UPS')")
    await p.execute("UPDATE shipment_items SET quantity = quantity WHERE id = 1")
    await p.execute("INSERT INTO invoice_amendments (invoice_id, reason, amount) VALUES (3, 'fee', 1)")
    shipment_invoice = await p.fetchval(
        "SELECT s.invoice_id FROM shipment_items i JOIN shipments s ON s.id = i.shipment_id WHERE i.id = 1"
    )
    assert await _changes(p) == [
        ("invoice", 1, "updated"),
        ("invoice", 2, "updated"),
        ("invoice", shipment_invoice, "updated"),
        ("invoice", 3, "updated"),
    ]
    await p.execute("TRUNCATE changes")
    rr = await p.fetchrow("SELECT id, invoice_id FROM refund_requests ORDER BY id LIMIT 1")
    await p.execute("UPDATE refund_request_line_items SET status = status WHERE refund_request_id = $1", rr["id"])
    assert set(await _changes(p)) == {("refund_request", rr["id"], "updated"), ("invoice", rr["invoice_id"], "updated")}
    await p.execute("TRUNCATE changes")
    variants = {r["id"] for r in await p.fetch("SELECT id FROM variants WHERE product_id = 1")}
    await p.execute("UPDATE products SET title = 'Renamed' WHERE id = 1")
    assert set(await _changes(p)) == {("variant", v, "updated") for v in variants}
    await p.execute("TRUNCATE changes")
    invoices = {r["id"] for r in await p.fetch("SELECT id FROM invoices WHERE order_id = 1")}
    await p.execute("UPDATE orders SET status = 'paid' WHERE id = 1")
    assert set(await _changes(p)) == {("invoice", i, "updated") for i in invoices}


async def test_a_bulk_statement_is_one_change_per_owner_and_one_notification(fixture_database_url: str) -> None:
    listener = await asyncpg.connect(fixture_database_url)
    writer = await asyncpg.connect(fixture_database_url)
    heard: list[str] = []
    await listener.add_listener("hookql_changes", lambda conn, pid, channel, payload: heard.append(payload))
    try:
        async with writer.transaction():
            await writer.execute(
                "INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price) "
                "SELECT 7, NULL, 1, 1 FROM generate_series(1, 10000)"
            )
            await writer.execute("UPDATE invoice_line_items SET quantity = 2 WHERE invoice_id = 7")
        # a session's notifications arrive in order: once the sentinel is heard, the statements' are too
        await writer.execute("SELECT pg_notify('hookql_changes', 'sentinel')")
        await wait_until(lambda: "sentinel" in heard)
        heard.remove("sentinel")
        changes = await writer.fetch("SELECT entity_type, entity_id, count(*) AS n FROM changes GROUP BY 1, 2")
    finally:
        await listener.close()
        await writer.close()
    assert [(r["entity_type"], r["entity_id"], r["n"]) for r in changes] == [("invoice", 7, 2)]  # one per statement
    assert len(heard) == 1


async def test_folding_created_updated_deleted(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url, fast(debounce_ms=300, max_delay_ms=2000)) as run:
            hook, _ = await add_webhook(run.pool, receiver.url, query=STATUS_QUERY)
            async with run.pool.acquire() as conn:
                # created + updated → one `created`
                new_id = await conn.fetchval("INSERT INTO invoices (order_id, seller_id) VALUES (1, 1) RETURNING id")
                await conn.execute("UPDATE invoices SET status = 'paid' WHERE id = $1", new_id)
                # created + deleted → nothing at all
                gone = await conn.fetchval("INSERT INTO invoices (order_id, seller_id) VALUES (1, 1) RETURNING id")
                await conn.execute("DELETE FROM invoices WHERE id = $1", gone)
                # updated + deleted → `deleted` with the missing-node payload
                await conn.execute("UPDATE invoices SET status = 'paid' WHERE id = 9")
                await conn.execute("DELETE FROM invoices WHERE id = 9")
            await receiver.wait_for(2)
            await wait_until(lambda: settled(run.pool))  # every fold processed: no third event is coming
            rows = await events(run.pool, hook)
    finally:
        await receiver.stop()
    by_entity = {r["entity_id"]: r for r in rows}
    assert set(by_entity) == {new_id, 9}
    assert by_entity[new_id]["event"] == "invoice.created"
    assert by_entity[new_id]["payload"] == {"data": {"invoice": {"status": "PAID"}}}
    assert by_entity[9]["event"] == "invoice.deleted"
    assert by_entity[9]["payload"] == {"data": {"invoice": None}}
    assert {json.loads(r.body)["event_name"] for r in receiver.received} == {"create", "delete"}


async def test_a_steady_stream_is_delivered_within_max_delay(fixture_database_url: str) -> None:
    # given an entity changed every 20 ms, never quiet for the 100 ms debounce
    receiver = await Receiver().start()
    updates = 0
    try:
        async with running_engine(fixture_database_url, fast(debounce_ms=100, max_delay_ms=300)) as run:
            await add_webhook(run.pool, receiver.url)
            loop = asyncio.get_running_loop()
            started = loop.time()
            # when the stream runs until three deliveries arrive (bounded, for a stuck engine)
            while len(receiver.received) < 3 and loop.time() - started < 15:
                await run.pool.execute("UPDATE invoice_line_items SET quantity = quantity % 5 + 1 WHERE id = 1")
                updates += 1
                await asyncio.sleep(0.02)
    finally:
        await receiver.stop()
    # then max delay delivers it again and again while it never goes quiet, each delivery folding
    # a burst of changes rather than one change each
    assert len(receiver.received) >= 3
    assert updates >= 3 * len(receiver.received)


async def test_a_shipment_reaches_only_subscribers_that_select_shipments(fixture_database_url: str) -> None:
    with_shipments = await Receiver().start()
    without = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            await add_webhook(run.pool, with_shipments.url, query=SHIPMENTS_QUERY)
            b, _ = await add_webhook(run.pool, without.url, query=STATUS_QUERY)
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 11")
            await with_shipments.wait_for(1)
            await without.wait_for(1)
            await wait_until(  # recorded after the receiver answered
                lambda: run.pool.fetchval(
                    "SELECT count(*) = 1 FROM webhook_events WHERE webhook_id = $1 AND status = 'delivered'", b
                )
            )
            await run.pool.execute("INSERT INTO shipments (invoice_id, carrier) VALUES (11, 'DHL')")
            await with_shipments.wait_for(2)
            await wait_until(
                lambda: run.pool.fetchval("SELECT count(*) = 2 FROM webhook_events WHERE webhook_id = $1", b)
            )
            statuses_b = [r["status"] for r in await events(run.pool, b)]
    finally:
        await with_shipments.stop()
        await without.stop()
    assert statuses_b == ["delivered", "skipped"] and len(without.received) == 1
    assert (
        json.loads(with_shipments.received[-1].body)["payload"]["data"]["invoice"]["shipments"][-1]["carrier"] == "DHL"
    )


async def test_events_filter_visibility_and_sequence(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            created_only, _ = await add_webhook(run.pool, receiver.url + "/created", events=["created"])
            seller_1, _ = await add_webhook(run.pool, receiver.url + "/seller1", seller_id=1, query=STATUS_QUERY)
            operator, _ = await add_webhook(run.pool, receiver.url + "/operator", query=STATUS_QUERY)
            mine = await run.pool.fetch("SELECT id FROM invoices WHERE seller_id = 1 ORDER BY id LIMIT 2")
            theirs = await run.pool.fetchval("SELECT id FROM invoices WHERE seller_id = 2 ORDER BY id LIMIT 1")
            ids = [r["id"] for r in mine] + [theirs]
            await run.pool.execute("UPDATE invoices SET status = 'refunded' WHERE id = ANY($1::bigint[])", ids)
            await wait_until(
                lambda: run.pool.fetchval("SELECT count(*) = 5 FROM webhook_events WHERE status = 'delivered'")
            )
            await wait_until(lambda: settled(run.pool))  # every change processed: no event is still to come
            created_events = await events(run.pool, created_only)
            seller_events = await events(run.pool, seller_1)
            operator_events = await events(run.pool, operator)
    finally:
        await receiver.stop()
    assert created_events == []
    assert sorted(e["entity_id"] for e in seller_events) == sorted(r["id"] for r in mine)
    assert sorted(e["entity_id"] for e in operator_events) == sorted(ids)
    assert sorted(e["sequence"] for e in operator_events) == [1, 2, 3]
    paths = [r.path for r in receiver.received]
    assert paths.count("/seller1") == 2 and paths.count("/operator") == 3 and "/created" not in paths


async def test_each_receiver_gets_its_own_querys_result_in_its_key_order(fixture_database_url: str) -> None:
    # given two webhooks whose queries overlap (evaluated merged) and list fields in an order a
    # jsonb column would have rearranged (shorter keys first)
    first, second = await Receiver().start(), await Receiver().start()
    q1 = "query($id: ID!) { invoice(id: $id) { status currency lineItems { quantity id } } }"
    q2 = "query($id: ID!) { node(id: $id) { ... on Invoice { currency total { formatted amount } status } } }"
    try:
        async with running_engine(fixture_database_url) as run:
            await add_webhook(run.pool, first.url, query=q1)
            await add_webhook(run.pool, second.url, query=q2)
            # when the invoice changes
            await run.pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 4")
            [a] = await first.wait_for(1)
            [b] = await second.wait_for(1)
    finally:
        await first.stop()
        await second.stop()
    # then each body carries exactly its query's fields, in the query's order, as raw JSON text
    node_a = a.json()["payload"]["data"]["invoice"]
    node_b = b.json()["payload"]["data"]["node"]
    assert list(node_a) == ["status", "currency", "lineItems"]
    assert all(list(item) == ["quantity", "id"] for item in node_a["lineItems"])
    assert list(node_b) == ["currency", "total", "status"] and list(node_b["total"]) == ["formatted", "amount"]
    assert b'"payload":{"data":{"invoice":{"status":"PAID","currency":' in a.body


async def test_a_claim_counts_the_owners_with_enabled_webhooks_of_any_type(fixture_pool: asyncpg.Pool) -> None:
    """Delivery's pacing shares its recording batch among them (app.policy.pacing)."""

    async def owners() -> int:
        async with fixture_pool.acquire() as conn:
            return (await pending.claim_due(conn, 10, 60)).owners

    variant_query = "{ variant { id } }"
    assert await owners() == 0
    # the operator's two webhooks are one owner
    await add_webhook(fixture_pool, "http://127.0.0.1:9/a")
    await add_webhook(fixture_pool, "http://127.0.0.1:9/b", entity_type="variant", query=variant_query)
    assert await owners() == 1
    # a seller's, on another type, is another; a disabled one's owner is none
    await add_webhook(fixture_pool, "http://127.0.0.1:9/c", entity_type="variant", query=variant_query, seller_id=1)
    await add_webhook(fixture_pool, "http://127.0.0.1:9/d", seller_id=2, enabled=False)
    assert await owners() == 2
    # and it counts them whether or not anything was due
    await fixture_pool.execute(
        "INSERT INTO pending_entities (entity_type, entity_id, action, seller_id, first_change_at, last_change_at,"
        " due_at) SELECT 'invoice', 1, 'updated', seller_id, now(), now(), now() FROM invoices WHERE id = 1"
    )
    async with fixture_pool.acquire() as conn:
        claim = await pending.claim_due(conn, 10, 60)
    assert [r["entity_id"] for r in claim.entities] == [1] and claim.owners == 2


async def _webhook_and_listener(database_url: str, pool: asyncpg.Pool) -> tuple[int, Producer]:
    """A status webhook that never skips, and a listener driven step by step (no loops running)."""
    hook, _ = await add_webhook(pool, "http://127.0.0.1:9/unused", query=STATUS_QUERY, skip_identical_payloads=False)
    return hook, Producer(pool, fast(debounce_ms=0), schema, make_context, Wakeups(database_url))


async def _fold_and_claim(listener: Producer, pool: asyncpg.Pool) -> tuple[list[Due], list[asyncpg.Record]]:
    """Fold the changes and claim what is due, as `evaluate_once` does before evaluating."""
    await listener.ingest_once()
    async with pool.acquire() as conn:
        claim = await pending.claim_due(conn, 10, 60)
    due = [Due(EntityType(r["entity_type"]), r["entity_id"], Action(r["action"]), r["seller_id"],
               r["last_change_at"], r["version"]) for r in claim.entities]
    return due, claim.webhooks


async def _evaluate(
    listener: Producer, due: list[Due], webhooks: list[pending.SubscribedWebhook]
) -> dict[tuple[int, str, int], Outcome]:
    """Every outcome of the batch, as `evaluate_once` hands them to the enqueue."""
    batch = listener.start_batch(due, webhooks)
    taken = [d async for ready in batch.as_ready(straggler_s=0.0) for d in ready]
    return batch.outcomes(taken)


async def test_an_entity_changed_while_it_is_evaluated_is_sent_and_evaluated_again(
    fixture_database_url: str, fixture_pool: asyncpg.Pool
) -> None:
    # given a webhook and an invoice created, folded and due
    pool = fixture_pool
    hook, listener = await _webhook_and_listener(fixture_database_url, pool)
    invoice = await pool.fetchval(
        "INSERT INTO invoices (order_id, seller_id, status) VALUES (1, 1, 'pending') RETURNING id"
    )
    due, webhooks = await _fold_and_claim(listener, pool)
    # when it is changed (and the change folded) between its evaluation and its enqueueing
    payloads = await _evaluate(listener, due, webhooks)
    await pool.execute("UPDATE invoices SET status = 'paid' WHERE id = $1", invoice)
    await listener.ingest_once()
    await listener._enqueue(due, webhooks, payloads)
    # then the evaluated state is enqueued at once, and the entity stays pending, as an update
    [first] = await events(pool, hook)
    assert first["event"] == "invoice.created"
    assert first["payload"]["data"]["invoice"]["status"] == "PENDING"
    left = await pool.fetchrow("SELECT action, claimed_until FROM pending_entities WHERE entity_id = $1", invoice)
    assert left["action"] == "updated" and left["claimed_until"] is None
    # and its next evaluation carries the newer state
    assert await listener.evaluate_once() == 1
    second = (await events(pool, hook))[-1]
    assert second["event"] == "invoice.updated" and second["payload"]["data"]["invoice"]["status"] == "PAID"


async def test_an_entity_deleted_while_it_is_evaluated_is_only_announced_as_deleted(
    fixture_database_url: str, fixture_pool: asyncpg.Pool
) -> None:
    # given a webhook and an updated invoice, folded and due
    pool = fixture_pool
    hook, listener = await _webhook_and_listener(fixture_database_url, pool)
    await pool.execute("UPDATE invoices SET status = 'paid' WHERE id = 5")
    due, webhooks = await _fold_and_claim(listener, pool)
    # when it is deleted (and the delete folded) between its evaluation and its enqueueing
    payloads = await _evaluate(listener, due, webhooks)
    await pool.execute("DELETE FROM invoices WHERE id = 5")
    await listener.ingest_once()
    await listener._enqueue(due, webhooks, payloads)
    # then no `updated` event goes out for it; its next evaluation announces the deletion
    assert await events(pool, hook) == []
    assert await listener.evaluate_once() == 1
    [only] = await events(pool, hook)
    assert only["event"] == "invoice.deleted" and only["payload"] == {"data": {"invoice": None}}


async def test_changes_inside_the_debounce_do_not_make_the_evaluator_look_in_vain(
    fixture_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an engine whose evaluator claims are counted, and a 400 ms debounce
    claims: list[int] = []
    claim_due = pending.claim_due

    async def counting(*args: Any, **kwargs: Any) -> pending.Claim:
        claim = await claim_due(*args, **kwargs)
        claims.append(len(claim.entities))
        return claim

    monkeypatch.setattr(pending, "claim_due", counting)
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url, fast(debounce_ms=400, max_delay_ms=5000)) as run:
            await add_webhook(run.pool, receiver.url, query=STATUS_QUERY)
            await asyncio.sleep(0.3)
            claims.clear()
            # when an invoice changes six times, 50 ms apart: six folds, each one not due yet
            for status in ["paid", "cancelled"] * 3:
                await run.pool.execute("UPDATE invoices SET status = $1 WHERE id = 7", status)
                await asyncio.sleep(0.05)
            await receiver.wait_for(1)
            # the attempt's start against the last change coalesced into its event (the trigger's
            # statement time): the test's own clock after each UPDATE returns would add the commit's
            # time, which on a loaded machine is long enough to hide a short debounce
            await wait_until(lambda: run.pool.fetchval("SELECT count(*) = 1 FROM webhook_attempts"))
            waited = await run.pool.fetchval(
                "SELECT extract(epoch FROM a.attempted_at - e.changed_at) FROM webhook_attempts a"
                " JOIN webhook_events e ON e.id = a.event_id WHERE e.entity_id = 7"
            )
    finally:
        await receiver.stop()
    # then the evaluator claimed when the entity came due, not once per fold
    assert sum(1 for n in claims if n == 0) <= 2, claims
    assert claims.count(1) == 1
    # … and still only after the debounce since the last change, which its event carries
    [delivered] = receiver.received
    assert delivered.json()["payload"]["data"]["invoice"]["status"] == "CANCELLED"  # the last change's state
    assert waited >= 0.4, waited
