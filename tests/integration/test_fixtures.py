"""The sample marketplace loads, is realistic enough to test with, and re-loading changes nothing
(edits survive, deleted rows come back, sequences only move forward); bad data loads nothing."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from app.store.fixtures import TABLES, FixturesError, load_fixtures

MINIMUMS = {
    "sellers": 3,
    "products": 30,
    "variants": 100,
    "orders": 60,
    "invoices": 60,
    "invoice_line_items": 100,
    "shipments": 10,
    "shipment_items": 10,
    "invoice_amendments": 10,
    "refund_requests": 5,
    "refund_request_line_items": 5,
    "option_types": 2,
    "option_values": 5,
    "variant_option_values": 100,
    "external_ids": 50,
}

# One plain INSERT per table, parents first, each relying on the id the sequence hands out.
PLAIN_INSERTS = {
    "sellers": ("INSERT INTO sellers (name) VALUES ('Late Seller') RETURNING id", ()),
    "products": ("INSERT INTO products (seller_id, title) VALUES ($1, 'P') RETURNING id", ("sellers",)),
    "variants": (
        "INSERT INTO variants (product_id, sku, price) VALUES ($1, 'NEW-1', 1) RETURNING id",
        ("products",),
    ),
    "orders": ("INSERT INTO orders (buyer_name, buyer_email) VALUES ('B', 'b@example.com') RETURNING id", ()),
    "invoices": (
        "INSERT INTO invoices (order_id, seller_id) VALUES ($1, $2) RETURNING id",
        ("orders", "sellers"),
    ),
    "invoice_line_items": (
        "INSERT INTO invoice_line_items (invoice_id, variant_id, quantity, unit_price) "
        "VALUES ($1, $2, 1, 1) RETURNING id",
        ("invoices", "variants"),
    ),
    "shipments": (
        "INSERT INTO shipments (invoice_id, carrier) VALUES ($1, 'DHL') RETURNING id",
        ("invoices",),
    ),
    "shipment_items": (
        "INSERT INTO shipment_items (shipment_id, invoice_line_item_id, quantity) "
        "VALUES ($1, $2, 1) RETURNING id",
        ("shipments", "invoice_line_items"),
    ),
    "invoice_amendments": (
        "INSERT INTO invoice_amendments (invoice_id, reason, amount) VALUES ($1, 'Fee', 1) RETURNING id",
        ("invoices",),
    ),
    "refund_requests": ("INSERT INTO refund_requests (invoice_id) VALUES ($1) RETURNING id", ("invoices",)),
    "refund_request_line_items": (
        "INSERT INTO refund_request_line_items (refund_request_id, invoice_line_item_id, quantity, amount) "
        "VALUES ($1, $2, 1, 1) RETURNING id",
        ("refund_requests", "invoice_line_items"),
    ),
    "option_types": ("INSERT INTO option_types (name) VALUES ('Material') RETURNING id", ()),
    "option_values": (
        "INSERT INTO option_values (option_type_id, name) VALUES ($1, 'Wool') RETURNING id",
        ("option_types",),
    ),
    "variant_option_values": (
        "INSERT INTO variant_option_values (variant_id, option_value_id) VALUES ($1, $2) RETURNING id",
        ("variants", "option_values"),
    ),
    "external_ids": (
        "INSERT INTO external_ids (invoice_id, key, value) VALUES ($1, 'erp', 'X1') RETURNING id",
        ("invoices",),
    ),
}


async def _counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def test_fixtures_load_once_and_reload_adds_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await load_fixtures(conn)
        second = await load_fixtures(conn)
        counts = await _counts(conn)
    assert list(first) == list(TABLES)
    assert all(first[t] >= MINIMUMS[t] for t in TABLES), first
    assert set(second.values()) == {0}
    assert counts == first


async def test_reload_keeps_edits_and_fills_in_deleted_rows(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await load_fixtures(conn)
        await conn.execute("UPDATE invoices SET status = 'cancelled' WHERE id = 1")
        await conn.execute("DELETE FROM orders WHERE id = 2")  # cascades to its invoices and their children
        expected = await _counts(conn)

        await load_fixtures(conn)

        assert await conn.fetchval("SELECT status FROM invoices WHERE id = 1") == "cancelled"
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE id = 2") == 1
        assert (await _counts(conn))["orders"] == expected["orders"] + 1


async def test_fixtures_are_consistent_and_varied(fixture_pool: asyncpg.Pool) -> None:
    async with fixture_pool.acquire() as conn:
        foreign = await conn.fetchval(
            "SELECT count(*) FROM invoice_line_items li JOIN invoices i ON i.id = li.invoice_id "
            "JOIN variants v ON v.id = li.variant_id JOIN products p ON p.id = v.product_id "
            "WHERE p.seller_id <> i.seller_id OR v.currency <> i.currency"
        )
        currencies = await conn.fetchval("SELECT count(DISTINCT currency) FROM invoices")
        statuses = await conn.fetchval("SELECT count(DISTINCT status) FROM invoices")
    assert foreign == 0
    assert currencies >= 3 and statuses >= 4


async def test_plain_inserts_into_every_table_after_loading_do_not_collide(
    fixture_pool: asyncpg.Pool,
) -> None:
    async with fixture_pool.acquire() as conn:
        max_ids = {t: await conn.fetchval(f"SELECT max(id) FROM {t}") for t in TABLES}
        new_ids: dict[str, int] = {}
        for table, (sql, parents) in PLAIN_INSERTS.items():
            new_ids[table] = await conn.fetchval(sql, *(new_ids[p] for p in parents))
    assert list(PLAIN_INSERTS) == list(TABLES)
    assert all(new_ids[t] > max_ids[t] for t in TABLES), (new_ids, max_ids)


async def test_loading_never_moves_a_sequence_backwards(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        # Ids up to 1000 were handed out (and their rows deleted) before the fixtures arrive.
        await conn.execute("SELECT setval(pg_get_serial_sequence('sellers', 'id'), 1000)")
        await load_fixtures(conn)
        assert await conn.fetchval("INSERT INTO sellers (name) VALUES ('Next') RETURNING id") == 1001


async def test_a_missing_directory_is_a_clear_error(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(FixturesError, match="no fixtures at"):
            await load_fixtures(conn, tmp_path / "nowhere")
        assert await conn.fetchval("SELECT count(*) FROM sellers") == 0


async def test_a_bad_file_loads_nothing(pool: asyncpg.Pool, tmp_path: Path) -> None:
    # The sellers are fine, the products refer to a seller that does not exist: nothing may stay behind.
    (tmp_path / "marketplace.json").write_text(
        '{"sellers": [{"id": 1, "name": "A"}], "products": [{"id": 1, "seller_id": 99, "title": "T"}]}'
    )
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await load_fixtures(conn, tmp_path)
        assert await conn.fetchval("SELECT count(*) FROM sellers") == 0
