"""API keys: generated once, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from app.models import OPERATOR, Visibility

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
    if seller_id is not None and not await conn.fetchval("SELECT 1 FROM sellers WHERE id = $1", seller_id):
        raise ValueError(f"seller {seller_id} does not exist")
    key = generate_key()
    await conn.execute(
        "INSERT INTO api_keys (key_hash, prefix, name, role, seller_id) VALUES ($1, $2, $3, $4, $5)",
        hash_key(key),
        key[:SHOWN_PREFIX_CHARS],
        name,
        "operator" if seller_id is None else "seller",
        seller_id,
    )
    return key


async def authenticate(pool: asyncpg.Pool, key: str) -> Visibility | None:
    """The visibility a key grants, or None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = await pool.fetchrow(
        "SELECT role, seller_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )
    if row is None:
        return None
    return OPERATOR if row["role"] == "operator" else Visibility(row["seller_id"])
