"""Loads the sample marketplace in `fixtures/` into the database: idempotent, one transaction."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "fixtures"

# Parents before children, so foreign keys hold at every insert.
TABLES = (
    "sellers",
    "products",
    "variants",
    "orders",
    "invoices",
    "invoice_line_items",
    "shipments",
    "shipment_items",
    "invoice_amendments",
    "refund_requests",
    "refund_request_line_items",
)
_NUMERIC = {"price", "unit_price", "amount"}
_TIMESTAMPS = {"created_at", "shipped_at"}


class FixturesError(RuntimeError):
    pass


def _value(column: str, value: object) -> object:
    if value is None:
        return None
    if column in _NUMERIC:
        return Decimal(str(value))
    if column in _TIMESTAMPS:
        return datetime.fromisoformat(str(value))
    return value


async def load_fixtures(conn: asyncpg.Connection, directory: Path | None = None) -> dict[str, int]:
    """Insert the fixture rows that are not there yet (by id) and move each id sequence past them,
    so later plain INSERTs don't collide. Returns how many rows each table gained."""
    path = (directory or DEFAULT_DIRECTORY) / "marketplace.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FixturesError(f"no fixtures at {path}: run hookql from a checkout of the repository") from None
    added: dict[str, int] = {}
    async with conn.transaction():
        for table in TABLES:
            rows = data.get(table, [])
            if not rows:
                added[table] = 0
                continue
            columns = list(rows[0])
            records = [tuple(_value(c, row.get(c)) for c in columns) for row in rows]
            # One statement per table: unnest the columns, skip ids already present.
            types = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1",
                table,
            )
            pg_type = {r["column_name"]: r["data_type"] for r in types}
            casts = ", ".join(f"${i + 1}::{_array_type(pg_type[c])}" for i, c in enumerate(columns))
            column_list = ", ".join(columns)
            result = await conn.execute(
                f"INSERT INTO {table} ({column_list}) SELECT * FROM unnest({casts}) ON CONFLICT (id) DO NOTHING",
                *[[rec[i] for rec in records] for i in range(len(columns))],
            )
            added[table] = int(result.rsplit(" ", 1)[-1])
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"
            )
    return added


def _array_type(data_type: str) -> str:
    return {"character": "text"}.get(data_type, data_type) + "[]"
