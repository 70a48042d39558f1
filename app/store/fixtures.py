"""Loads the sample marketplace in `fixtures/` into the database: idempotent, one transaction.

The data lives in the repository (fixtures/marketplace.json, written by fixtures/generate.py),
not in the package: it is sample data for a checkout, and `hookql fixtures load` from an
installed wheel says so clearly instead of loading something stale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from app.store.queries import Query, compile_block, load

Q = load("fixtures")

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "fixtures"
DATA_FILE = "marketplace.json"

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
    "option_types",
    "option_values",
    "variant_option_values",
    "external_ids",
)
# JSON has no decimal or timestamp: money travels as strings ("12.50", never a float) and times as
# ISO 8601; asyncpg wants Decimal and datetime for those columns.
_NUMERIC = frozenset({"price", "sale_price", "unit_price", "amount"})
_TIMESTAMPS = frozenset({"created_at", "updated_at", "shipped_at"})

# The statements that name a table are templates; `{table}` is always one of TABLES.
#
# Move the id sequence past the largest id, never backwards: a sequence that already handed out
# higher ids (rows since deleted) must not hand them out again, or a new row would reuse the id of
# a deleted entity that webhooks have already been told about.
_BUMP_SEQUENCE = """
SELECT setval(s.seq, m.max_id)
FROM (SELECT pg_get_serial_sequence(:table, 'id') AS seq) s,
     LATERAL (SELECT max(id) AS max_id FROM {table}) m
WHERE m.max_id > coalesce(
    (SELECT last_value FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = s.seq), 0)
"""


class FixturesError(RuntimeError):
    """The fixture data is missing or malformed; the message says what to do."""


def read_fixtures(directory: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """The rows of every table, as stored in `directory/marketplace.json` (default: the repo's fixtures/)."""
    path = (directory or DEFAULT_DIRECTORY) / DATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixturesError(
            f"no fixtures at {path}: the sample data ships with the repository, not the package; "
            "run from a checkout or pass its fixtures/ directory"
        ) from None
    except json.JSONDecodeError as exc:
        raise FixturesError(f"{path} is not valid JSON: {exc}") from None
    unknown = set(data) - set(TABLES)
    if unknown:
        raise FixturesError(f"{path} names unknown tables: {', '.join(sorted(unknown))}")
    return {table: data.get(table, []) for table in TABLES}


async def load_fixtures(conn: asyncpg.Connection, directory: Path | None = None) -> dict[str, int]:
    """Insert the fixture rows not there yet (matched by id) and move each id sequence past them.

    Runs in one transaction: all or nothing. Safe to re-run: rows already present are left as they
    are (ON CONFLICT (id) DO NOTHING), so edits made to fixture rows since survive a reload.
    Afterwards plain INSERTs without an id don't collide with the fixtures. Returns, per table in
    load order, how many rows were inserted (all zeros on a re-run).
    """
    data = read_fixtures(directory)
    added: dict[str, int] = {}
    async with conn.transaction():
        types: dict[tuple[str, str], str] = {
            (r["table_name"], r["column_name"]): r["type"]
            for r in await conn.fetch(*Q.column_types(tables=list(TABLES)))
        }
        for table in TABLES:
            rows = data[table]
            added[table] = await _insert(conn, table, rows, types) if rows else 0
            await conn.execute(*_bump_sequence(table)(table=table))
    return added


@cache
def _bump_sequence(table: str) -> Query:
    return compile_block(f"bump_{table}_id", _BUMP_SEQUENCE.format(table=table))


async def _insert(
    conn: asyncpg.Connection, table: str, rows: Sequence[dict[str, Any]], types: dict[tuple[str, str], str]
) -> int:
    """One statement per table: each column travels as one typed array and unnest() zips them back
    into rows, so 300 rows cost one round trip (COPY would too, but cannot skip existing ids)."""
    columns = list(rows[0])
    if "id" not in columns:  # without explicit ids a re-run could not recognise its own rows
        raise FixturesError(f"{table} rows need an explicit id")
    for row in rows:
        if list(row) != columns:
            raise FixturesError(f"{table} row {row.get('id')} has columns {list(row)}, expected {columns}")
    missing = [c for c in columns if (table, c) not in types]
    if missing:
        raise FixturesError(f"table {table} has no column(s) {', '.join(missing)}: is the database migrated?")
    arrays = [[_value(column, row[column]) for row in rows] for column in columns]
    casts = ", ".join(f"${i}::{_array_type(types[table, c])}" for i, c in enumerate(columns, start=1))
    column_list = ", ".join(columns)  # checked against the catalogue above, so safe to splice in
    sql = f"INSERT INTO {table} ({column_list}) SELECT * FROM unnest({casts}) ON CONFLICT (id) DO NOTHING"
    status = await conn.execute(sql, *arrays)
    return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <n>"


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _NUMERIC:
        return Decimal(str(value))
    if column in _TIMESTAMPS:
        return datetime.fromisoformat(str(value))
    return value


def _array_type(column_type: str) -> str:
    # character(3)[] would be fine, but text[] avoids blank-padding surprises for char columns.
    return ("text" if column_type.startswith("character(") else column_type) + "[]"
