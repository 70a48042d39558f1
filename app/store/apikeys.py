"""API keys: generated once, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from app.store.queries import load
from app.types import OPERATOR, Visibility

Q = load("apikeys")

KEY_PREFIX = "hk_"
SHOWN_PREFIX_CHARS = 10  # stored in clear so an operator can tell keys apart


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    # Keys carry 256 random bits: a plain SHA-256 is enough; a slow KDF would only slow every request.
    return hashlib.sha256(key.encode()).digest()


async def create_key(conn: asyncpg.Connection, *, seller_id: int | None, name: str = "") -> str:
    """Store a new key for the operator (seller_id None) or one seller; return it (the only time
    it is visible). Raises ValueError for an unknown seller."""
    if seller_id is not None and not await conn.fetchval(*Q.seller_exists(seller_id=seller_id)):
        raise ValueError(f"seller {seller_id} does not exist")
    key = generate_key()
    await conn.execute(
        *Q.insert_key(
            key_hash=hash_key(key),
            prefix=key[:SHOWN_PREFIX_CHARS],
            name=name,
            role="operator" if seller_id is None else "seller",
            seller_id=seller_id,
        )
    )
    return key


async def authenticate(pool: asyncpg.Pool, key: str) -> Visibility | None:
    """The visibility a key grants, or None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = await pool.fetchrow(*Q.key_grant(key_hash=hash_key(key)))
    if row is None:
        return None
    return OPERATOR if row["role"] == "operator" else Visibility(row["seller_id"])
