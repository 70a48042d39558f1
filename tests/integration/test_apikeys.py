"""API keys: shown once, stored hashed, each granting the operator's or one seller's visibility."""

import asyncpg
import pytest

from app.store.apikeys import SHOWN_PREFIX_CHARS, authenticate, create_key, hash_key
from app.types import OPERATOR, Visibility


async def test_a_key_is_stored_only_as_its_hash_and_shown_prefix(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ci")
    row = await pool.fetchrow("SELECT * FROM api_keys")
    assert row["key_hash"] == hash_key(key) and len(row["key_hash"]) == 32
    assert row["prefix"] == key[:SHOWN_PREFIX_CHARS] == key[:10]
    assert (row["name"], row["role"], row["seller_id"]) == ("ci", "operator", None)
    assert key not in [str(v) for v in row.values()]


async def test_a_key_grants_its_owners_visibility(pool: asyncpg.Pool) -> None:
    seller = await pool.fetchval("INSERT INTO sellers (name) VALUES ('Acme') RETURNING id")
    async with pool.acquire() as conn:
        operator_key = await create_key(conn, seller_id=None, name="ops")
        seller_key = await create_key(conn, seller_id=seller, name="acme")
    assert await authenticate(pool, operator_key) == OPERATOR
    assert await authenticate(pool, seller_key) == Visibility(seller)


@pytest.mark.parametrize("key", ["", "hk_", "hk_unknown", "not-a-key", "hk_" + "x" * 500, "Bearer hk_x"])
async def test_unknown_and_malformed_keys_grant_nothing(pool: asyncpg.Pool, key: str) -> None:
    async with pool.acquire() as conn:
        await create_key(conn, seller_id=None, name="ops")
    assert await authenticate(pool, key) is None


async def test_a_revoked_key_grants_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="ops")
    await pool.execute("UPDATE api_keys SET revoked_at = now()")
    assert await authenticate(pool, key) is None


async def test_a_key_for_an_unknown_seller_is_refused_and_nothing_is_stored(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="seller 424242 does not exist"):
            await create_key(conn, seller_id=424242, name="x")
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == 0
