"""The database schema as stable text, read from the catalog: what the migrations produce.

`describe_schema` lists the `public` schema's tables and views with their columns, then indexes,
constraints, triggers, functions and sequences, each sorted by name, one item per line. It reads
pg_catalog rather than running pg_dump, which may be missing or of another version than the
server. Column order is the tables' own (attnum): migrations that add columns append them.

NOT NULL is shown on the column, never as a constraint: PostgreSQL 18 also records it in
pg_constraint (contype 'n'), earlier versions do not, and the text should not depend on that."""

from __future__ import annotations

import asyncpg

from app.store.queries import load

Q = load("catalog")


async def describe_schema(conn: asyncpg.Connection) -> str:
    """The `public` schema as text, identical for identical schemas (see the module docstring)."""
    lines: list[str] = []
    columns: dict[str, list[str]] = {}
    for r in await conn.fetch(*Q.columns()):
        column = f"  {r['name']} {r['type']}"
        if r["not_null"]:
            column += " NOT NULL"
        if r["identity"]:
            column += f" GENERATED {r['identity']} AS IDENTITY"
        elif r["generated"]:
            column += f" GENERATED ALWAYS AS ({r['default_expr']}) {r['generated']}"
        elif r["default_expr"] is not None:
            column += f" DEFAULT {r['default_expr']}"
        columns.setdefault(r["relation"], []).append(column)
    for r in await conn.fetch(*Q.relations()):
        lines.append(f"{r['kind']} {r['name']}")
        lines.extend(columns.get(r["name"], []))
    lines.append("")
    lines.extend(f"index {r['name']}: {r['definition']}" for r in await conn.fetch(*Q.indexes()))
    lines.append("")
    lines.extend(
        f"constraint {r['relation']}.{r['name']}: {r['definition']}" for r in await conn.fetch(*Q.constraints())
    )
    lines.append("")
    lines.extend(f"trigger {r['relation']}.{r['name']}: {r['definition']}" for r in await conn.fetch(*Q.triggers()))
    lines.append("")
    lines.extend(f"function {r['name']}({r['arguments']}) -> {r['result']}" for r in await conn.fetch(*Q.functions()))
    lines.append("")
    lines.extend(f"sequence {r['name']} {r['type']}" for r in await conn.fetch(*Q.sequences()))
    return "\n".join(lines) + "\n"
