"""The sample marketplace loads, is realistic enough to test with, and re-loading changes nothing."""

import asyncpg

from app.fixtures import TABLES, load_fixtures

MINIMUMS = {
    "sellers": 3,
    "products": 30,
    "variants": 100,
    "orders": 60,
    "invoices": 60,
    "invoice_line_items": 60,
    "shipments": 1,
    "shipment_items": 1,
    "invoice_amendments": 1,
    "refund_requests": 1,
    "refund_request_line_items": 1,
}


async def test_fixtures_load_once_and_reload_adds_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await load_fixtures(conn)
        second = await load_fixtures(conn)
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    assert all(first[t] >= MINIMUMS[t] for t in TABLES), first
    assert set(second.values()) == {0}
    assert counts == first


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


async def test_plain_inserts_after_loading_do_not_collide(fixture_pool: asyncpg.Pool) -> None:
    async with fixture_pool.acquire() as conn:
        seller = await conn.fetchval("INSERT INTO sellers (name) VALUES ('New') RETURNING id")
        product = await conn.fetchval(
            "INSERT INTO products (seller_id, title) VALUES ($1, 'P') RETURNING id", seller
        )
        assert await conn.fetchval(
            "INSERT INTO variants (product_id, sku, price) VALUES ($1, 'NEW-1', 1) RETURNING id", product
        )
