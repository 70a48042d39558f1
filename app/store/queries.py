"""Named SQL. Every static statement hookql runs sits in a `.sql` file under `app/store/sql/` as a
block that starts `-- name: claim_events`, with its parameters named (`:lease_s`) rather than
numbered. Loading compiles each block once to asyncpg's positional form; a call passes parameters
by name and gets back the `(sql, *args)` that `conn.fetch(...)` and its siblings take:

    CLAIM = load("delivery")
    rows = await conn.fetch(*CLAIM.claim_events(limit=100, lease_s=30.0))

A missing or unknown parameter is a `TypeError` at the call, naming it. `::type` casts are not
parameters. Comment lines (`--` at the start of a line) are dropped from the text sent, so a
comment may mention `:names` freely.

Written by hand rather than with aiosql, the library made for this: aiosql's asyncpg adapter cost
40–60 µs more per call than a plain `conn.fetchval` on this machine (3,000 calls of a one-value
query, 2026-12-02), and the engine runs 15–30 statements per pipeline pass; this loader adds
only the building of one tuple."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).parent / "sql"

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
# `:name`, but not the second colon of a `::cast` nor a colon inside a word or number ('12:30').
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Query:
    """One named statement: `sql` is the positional text sent; `params` names `$1`, `$2` … in order."""

    name: str
    sql: str
    params: tuple[str, ...]

    def __call__(self, **values: Any) -> tuple[Any, ...]:
        if values.keys() != set(self.params):
            missing = sorted(set(self.params) - values.keys())
            unknown = sorted(values.keys() - set(self.params))
            raise TypeError(f"query {self.name}: missing parameters {missing}, unknown parameters {unknown}")
        return (self.sql, *(values[p] for p in self.params))


def compile_block(name: str, text: str) -> Query:
    """One block's text (without its `-- name:` line) → a `Query`; a parameter used twice is one `$n`."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()
    params: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in params:
            params.append(match.group(1))
        return f"${params.index(match.group(1)) + 1}"

    return Query(name, _PARAMETER.sub(number, body).rstrip(";").rstrip(), tuple(params))


def parse(source: str) -> dict[str, Query]:
    """All the named blocks of one `.sql` text. Text before the first `-- name:` is the file's header."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in source.splitlines():
        found = _NAME_LINE.match(line.strip())
        if found:
            if found.group(1) in blocks:
                raise ValueError(f"query {found.group(1)} is named twice")
            current = blocks[found.group(1)] = []
        elif current is not None:
            current.append(line)
    return {name: compile_block(name, "\n".join(lines)) for name, lines in blocks.items()}


class Queries:
    """The queries of one file, as attributes (`Q.claim_events`)."""

    def __init__(self, queries: dict[str, Query]) -> None:
        self._queries = queries
        for name, query in queries.items():
            setattr(self, name, query)

    def __getattr__(self, name: str) -> Query:  # typing: every attribute read is a Query
        raise AttributeError(f"no query named {name}")

    def __iter__(self) -> Iterator[Query]:
        return iter(self._queries.values())


@cache
def load(stem: str) -> Queries:
    """`load("delivery")` reads `app/store/sql/delivery.sql` (once per process)."""
    return Queries(parse((SQL_DIR / f"{stem}.sql").read_text()))
