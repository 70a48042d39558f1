"""The database schema as stable text, read from the catalog: what the migrations produce.

`describe_schema` lists the `public` schema's tables and views with their columns, then indexes,
constraints, triggers, functions and sequences, each sorted by name, one item per line. It reads
pg_catalog rather than running pg_dump, which may be missing or of another version than the
server. Column order is the tables' own (attnum): migrations that add columns append them.

NOT NULL is shown on the column, never as a constraint: PostgreSQL 18 also records it in
pg_constraint (contype 'n'), earlier versions do not, and the text should not depend on that."""

from __future__ import annotations

import asyncpg

_RELATIONS = """
SELECT c.relname AS name,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname
"""

_COLUMNS = """
SELECT c.relname AS relation,
       a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END AS identity,
       CASE a.attgenerated WHEN 's' THEN 'STORED' WHEN 'v' THEN 'VIRTUAL' END AS generated
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_INDEXES = """
SELECT indexname AS name, indexdef AS definition
FROM pg_indexes
WHERE schemaname = 'public'
ORDER BY tablename, indexname
"""

_CONSTRAINTS = """
SELECT c.relname AS relation, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relnamespace = 'public'::regnamespace AND k.contype <> 'n'
ORDER BY c.relname, k.conname
"""

_TRIGGERS = """
SELECT c.relname AS relation, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""

_FUNCTIONS = """
SELECT p.proname AS name,
       pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
ORDER BY p.proname, 2
"""

_SEQUENCES = """
SELECT c.relname AS name, format_type(s.seqtypid, NULL) AS type
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
WHERE c.relnamespace = 'public'::regnamespace
ORDER BY c.relname
"""


async def describe_schema(conn: asyncpg.Connection) -> str:
    """The `public` schema as text, identical for identical schemas (see the module docstring)."""
    lines: list[str] = []
    columns: dict[str, list[str]] = {}
    for r in await conn.fetch(_COLUMNS):
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
    for r in await conn.fetch(_RELATIONS):
        lines.append(f"{r['kind']} {r['name']}")
        lines.extend(columns.get(r["name"], []))
    lines.append("")
    lines.extend(f"index {r['name']}: {r['definition']}" for r in await conn.fetch(_INDEXES))
    lines.append("")
    lines.extend(f"constraint {r['relation']}.{r['name']}: {r['definition']}" for r in await conn.fetch(_CONSTRAINTS))
    lines.append("")
    lines.extend(f"trigger {r['relation']}.{r['name']}: {r['definition']}" for r in await conn.fetch(_TRIGGERS))
    lines.append("")
    lines.extend(f"function {r['name']}({r['arguments']}) -> {r['result']}" for r in await conn.fetch(_FUNCTIONS))
    lines.append("")
    lines.extend(f"sequence {r['name']} {r['type']}" for r in await conn.fetch(_SEQUENCES))
    return "\n".join(lines) + "\n"
