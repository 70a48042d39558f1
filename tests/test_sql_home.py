"""Every SQL statement lives under app/store/ (STYLE.md, habit 4): outside it, no string constant
in app/ starts with a SQL keyword. Read from the source with `ast`, so a statement written into
the API, the engine or the web layer fails here, in the unit tier, naming its file and line.

The match is on the uppercase keyword at the start of the string (after whitespace), as hookql
writes SQL; prose starts in lowercase or with another word. Docstrings are never sent to the
database and are not checked."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import app

APP = Path(app.__file__).parent
STORE = APP / "store"

SQL_START = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|LISTEN|NOTIFY|TRUNCATE|COPY)\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of the module, its classes and its functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _string_starts(tree: ast.AST) -> list[ast.Constant]:
    """The string constants that begin a string: plain ones, and the first literal part of an
    f-string (its later parts and format specs continue a string, they do not begin one)."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner.update(id(part) for part in node.values[1:])
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            inner.update(id(part) for part in ast.walk(node.format_spec))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner
    ]


def sql_strings(path: Path) -> list[str]:
    """`file:line: text` for each string constant in one source file that starts like a statement."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    return [
        f"{path}:{node.lineno}: {node.value.strip()[:60]!r}"
        for node in _string_starts(tree)
        if id(node) not in docstrings and SQL_START.match(node.value)
    ]


def statements_outside_the_store() -> list[str]:
    found: list[str] = []
    for path in sorted(APP.rglob("*.py")):
        if not path.is_relative_to(STORE):
            found.extend(sql_strings(path))
    return found


def test_no_sql_statement_outside_app_store() -> None:
    found = statements_outside_the_store()
    assert not found, "SQL outside app/store/ (move it into a named query):\n" + "\n".join(found)


def test_the_store_does_hold_statements() -> None:
    # The checker sees the store's own inline statements (its per-table templates), so an empty
    # answer above means "none outside", not "none recognised".
    assert any(sql_strings(path) for path in STORE.rglob("*.py"))


def test_the_checker_names_a_planted_statement_by_file_and_line(tmp_path: Path) -> None:
    # given a module with statements in plain strings and f-strings, and prose that is not SQL
    source = tmp_path / "planted.py"
    source.write_text(
        '"""SELECT in a module docstring is prose."""\n'
        "def f(conn, table):\n"
        '    """UPDATE in a function docstring is prose too."""\n'
        '    conn.fetch("  SELECT 1")\n'
        '    conn.execute(f"\\n  INSERT INTO {table} VALUES (1)")\n'
        '    log("selecting rows; update later", f"{table} UPDATE", f"{table:>10}")\n'
        '    return "WITHOUT a keyword of its own", "Deleted", "LISTENING"\n'
    )
    # then exactly the two statements are reported, with their lines
    found = sql_strings(source)
    assert [line.split(": ", 1)[0] for line in found] == [f"{source}:4", f"{source}:5"]
    assert "SELECT 1" in found[0] and "INSERT INTO" in found[1]
