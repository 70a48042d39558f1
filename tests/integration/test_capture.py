"""Change capture (SPEC §5.1): every committed write to a marketplace table is a change row of the
entity it belongs to, with its seller, written in the writer's transaction — entities deleted by a
cascade included, end to end (wake-ups per transaction: test_engine_pipeline.py)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support.engine_harness import add_webhook, events, running_engine, settled, wait_until
from tests.support.receivers import Receiver

Change = tuple[str, int, str, int | None]  # (entity_type, entity_id, action, seller_id)


async def changes_of(pool: asyncpg.Pool, sql: str, *args: Any) -> set[Change]:
    """The changes one statement records, starting from an empty change table."""
    await pool.execute("TRUNCATE changes")
    await pool.execute(sql, *args)
    rows = await pool.fetch("SELECT entity_type, entity_id, action, seller_id FROM changes")
    return {(r["entity_type"], r["entity_id"], r["action"], r["seller_id"]) for r in rows}


async def seller_of_invoice(pool: asyncpg.Pool, invoice_id: int) -> int:
    return int(await pool.fetchval("SELECT seller_id FROM invoices WHERE id = $1", invoice_id))


async def test_invoices_and_variants_are_changes_of_themselves(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    # given an order, a seller and a product of that seller
    product = await p.fetchrow("SELECT id, seller_id FROM products ORDER BY id LIMIT 1")
    seller = product["seller_id"]
    # when invoices and variants are written, then each row is a change of itself, with its seller
    new_invoice = await p.fetchval("SELECT max(id) + 1 FROM invoices")
    insert = "INSERT INTO invoices (id, order_id, seller_id) VALUES ($1, 1, $2)"
    assert await changes_of(p, insert, new_invoice, seller) == {("invoice", new_invoice, "created", seller)}
    assert await changes_of(p, "UPDATE invoices SET status = 'paid' WHERE id = $1", new_invoice) == {
        ("invoice", new_invoice, "updated", seller)
    }
    assert await changes_of(p, "DELETE FROM invoices WHERE id = $1", new_invoice) == {
        ("invoice", new_invoice, "deleted", seller)
    }
    new_variant = await p.fetchval("SELECT max(id) + 1 FROM variants")
    insert = "INSERT INTO variants (id, product_id, sku, price) VALUES ($1, $2, 'CAP-1', 1)"
    assert await changes_of(p, insert, new_variant, product["id"]) == {("variant", new_variant, "created", seller)}
    assert await changes_of(p, "UPDATE variants SET count_on_hand = 3 WHERE id = $1", new_variant) == {
        ("variant", new_variant, "updated", seller)
    }
    assert await changes_of(p, "DELETE FROM variants WHERE id = $1", new_variant) == {
        ("variant", new_variant, "deleted", seller)
    }


async def test_rows_an_invoice_owns_are_updates_of_the_invoice(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    invoice = 5
    seller = await seller_of_invoice(p, invoice)
    touched = {("invoice", invoice, "updated", seller)}
    line_item = await p.fetchval(
        "INSERT INTO invoice_line_items (invoice_id, quantity, unit_price) VALUES ($1, 1, 1) RETURNING id", invoice
    )
    await p.execute("TRUNCATE changes")
    assert await changes_of(p, "UPDATE invoice_line_items SET quantity = 2 WHERE id = $1", line_item) == touched
    shipment = await p.fetchval("INSERT INTO shipments (invoice_id, carrier) VALUES ($1, 'UPS') RETURNING id", invoice)
    for sql, *args in [
        ("UPDATE shipments SET status = 'shipped' WHERE id = $1", shipment),
        (
            "INSERT INTO shipment_items (shipment_id, invoice_line_item_id, quantity) VALUES ($1, $2, 1)",
            shipment,
            line_item,
        ),
        ("UPDATE shipment_items SET quantity = 1 WHERE shipment_id = $1", shipment),
        ("DELETE FROM shipment_items WHERE shipment_id = $1", shipment),
        ("DELETE FROM shipments WHERE id = $1", shipment),
        ("INSERT INTO invoice_amendments (invoice_id, reason, amount) VALUES ($1, 'fee', 2)", invoice),
        ("UPDATE invoice_amendments SET amount = 3 WHERE invoice_id = $1", invoice),
        ("DELETE FROM invoice_amendments WHERE invoice_id = $1", invoice),
        ("DELETE FROM invoice_line_items WHERE id = $1", line_item),
    ]:
        assert await changes_of(p, sql, *args) == touched, sql


async def test_a_row_moved_to_another_owner_touches_both(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    line_item = await p.fetchrow("SELECT id, invoice_id FROM invoice_line_items ORDER BY id LIMIT 1")
    target = await p.fetchval("SELECT id FROM invoices WHERE id <> $1 ORDER BY id LIMIT 1", line_item["invoice_id"])
    got = await changes_of(p, "UPDATE invoice_line_items SET invoice_id = $1 WHERE id = $2", target, line_item["id"])
    assert {(c[0], c[1], c[2]) for c in got} == {
        ("invoice", line_item["invoice_id"], "updated"),
        ("invoice", target, "updated"),
    }


async def test_refund_requests_are_changes_of_themselves_and_of_their_invoice(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    invoice = 7
    seller = await seller_of_invoice(p, invoice)
    rr = await p.fetchval("SELECT max(id) + 1 FROM refund_requests")
    got = await changes_of(p, "INSERT INTO refund_requests (id, invoice_id) VALUES ($1, $2)", rr, invoice)
    assert got == {("refund_request", rr, "created", seller), ("invoice", invoice, "updated", seller)}
    item = await p.fetchval("SELECT id FROM invoice_line_items WHERE invoice_id = $1 LIMIT 1", invoice)
    got = await changes_of(
        p,
        "INSERT INTO refund_request_line_items (refund_request_id, invoice_line_item_id, quantity, amount) "
        "VALUES ($1, $2, 1, 1)",
        rr,
        item,
    )
    # a refund request line item is a change of its refund request, and so of the invoice too
    assert got == {("refund_request", rr, "updated", seller), ("invoice", invoice, "updated", seller)}
    approve = "UPDATE refund_request_line_items SET status = 'approved' WHERE refund_request_id = $1"
    got = await changes_of(p, approve, rr)
    assert got == {("refund_request", rr, "updated", seller), ("invoice", invoice, "updated", seller)}
    assert await changes_of(p, "UPDATE refund_requests SET status = 'approved' WHERE id = $1", rr) == {
        ("refund_request", rr, "updated", seller),
        ("invoice", invoice, "updated", seller),
    }


async def test_entities_deleted_by_a_cascade_keep_their_seller(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    # given a product with variants, and an invoice with refund requests
    product = await p.fetchrow(
        "SELECT p.id, p.seller_id FROM products p WHERE EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id) "
        "ORDER BY p.id LIMIT 1"
    )
    variants = {r["id"] for r in await p.fetch("SELECT id FROM variants WHERE product_id = $1", product["id"])}
    rr = await p.fetchrow("SELECT id, invoice_id FROM refund_requests ORDER BY id LIMIT 1")
    seller = await seller_of_invoice(p, rr["invoice_id"])
    # when the owner is deleted, then the cascaded children are `deleted` with the owner's seller
    # (so the seller's own webhooks hear of it), and no `updated` follows for the deleted owner
    got = await changes_of(p, "DELETE FROM products WHERE id = $1", product["id"])
    assert {(c[0], c[1], c[2], c[3]) for c in got if c[0] == "variant" and c[3] is not None} == {
        ("variant", v, "deleted", product["seller_id"]) for v in variants
    }
    assert {c[2] for c in got if c[0] == "variant"} == {"deleted"}
    got = await changes_of(p, "DELETE FROM invoices WHERE id = $1", rr["invoice_id"])
    assert ("refund_request", rr["id"], "deleted", seller) in got
    assert ("invoice", rr["invoice_id"], "deleted", seller) in got
    assert not any(c[0] == "invoice" and c[2] == "updated" for c in got)
    # and the same two levels down: an order's deletion cascades to its invoices and their refunds
    rr = await p.fetchrow(
        "SELECT r.id, i.order_id, i.seller_id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id "
        "ORDER BY r.id LIMIT 1"
    )
    got = await changes_of(p, "DELETE FROM orders WHERE id = $1", rr["order_id"])
    assert ("refund_request", rr["id"], "deleted", rr["seller_id"]) in got


async def test_a_change_exists_exactly_when_its_transaction_commits(fixture_database_url: str) -> None:
    writer = await asyncpg.connect(fixture_database_url)
    reader = await asyncpg.connect(fixture_database_url)
    try:
        tx = writer.transaction()
        await tx.start()
        await writer.execute("UPDATE invoices SET status = 'paid' WHERE id = 1")
        assert await reader.fetchval("SELECT count(*) FROM changes") == 0
        await tx.rollback()
        assert await reader.fetchval("SELECT count(*) FROM changes") == 0
        async with writer.transaction():
            await writer.execute("UPDATE invoices SET status = 'paid' WHERE id = 1")
        assert await reader.fetchval("SELECT count(*) FROM changes") == 1
    finally:
        await writer.close()
        await reader.close()



async def test_a_sellers_webhook_hears_of_variants_deleted_with_their_product(fixture_database_url: str) -> None:
    receiver = await Receiver().start()
    try:
        async with running_engine(fixture_database_url) as run:
            # given a product with variants, and variant webhooks of its seller and of another seller
            product = await run.pool.fetchrow(
                "SELECT p.id, p.seller_id FROM products p "
                "WHERE EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id) ORDER BY p.id LIMIT 1"
            )
            rows = await run.pool.fetch("SELECT id FROM variants WHERE product_id = $1", product["id"])
            variants = {r["id"] for r in rows}
            other = await run.pool.fetchval("SELECT min(id) FROM sellers WHERE id <> $1", product["seller_id"])
            query = "query($id: ID!) { variant(id: $id) { sku } }"
            mine, _ = await add_webhook(
                run.pool, receiver.url + "/mine", entity_type="variant", query=query, seller_id=product["seller_id"]
            )
            theirs, _ = await add_webhook(
                run.pool, receiver.url + "/theirs", entity_type="variant", query=query, seller_id=other
            )
            # when the product is deleted (its variants go by cascade)
            await run.pool.execute("DELETE FROM products WHERE id = $1", product["id"])
            await receiver.wait_for(len(variants))
            await wait_until(lambda: settled(run.pool))  # every deletion processed, for both webhooks
            mine_events = await events(run.pool, mine)
            theirs_events = await events(run.pool, theirs)
    finally:
        await receiver.stop()
    # then the owner's webhook hears of every variant, as deleted; the other seller's hears nothing
    assert {e["entity_id"] for e in mine_events} == variants
    assert {(e["event"], e["status"]) for e in mine_events} == {("variant.deleted", "delivered")}
    assert all(e["payload"] == {"data": {"variant": None}} for e in mine_events)
    assert theirs_events == [] and {r.path for r in receiver.received} == {"/mine"}
