"""Named SQL (app.store.queries): how `.sql` blocks become positional statements, and that every
file under app/store/sql/ loads."""

from __future__ import annotations

import pytest

from app.store.queries import SQL_DIR, compile_block, load, parse


def test_named_parameters_become_positions_in_first_use_order() -> None:
    # given a statement that uses one parameter twice and casts another
    query = compile_block("q", "SELECT :b::int, :a, :b -- trailing\n")
    # then each name is one position, and the cast's colons stay
    assert query.sql == "SELECT $1::int, $2, $1 -- trailing"
    assert query.params == ("b", "a")
    assert query(a=1, b=2) == ("SELECT $1::int, $2, $1 -- trailing", 2, 1)


def test_casts_times_and_comment_lines_are_not_parameters() -> None:
    query = compile_block("q", "-- uses :nothing here\nSELECT '12:30'::time, x::text[] FROM t;")
    assert query.params == ()
    assert query.sql == "SELECT '12:30'::time, x::text[] FROM t"


def test_a_call_with_a_missing_or_unknown_parameter_names_it() -> None:
    query = compile_block("pick", "SELECT :a, :b")
    with pytest.raises(TypeError, match=r"pick: missing parameters \['b'\], unknown parameters \['c'\]"):
        query(a=1, c=3)


def test_a_file_holds_several_named_blocks_and_refuses_a_name_twice() -> None:
    queries = parse("-- header\n\n-- name: one\nSELECT 1;\n\n-- name: two\nSELECT :x;\n")
    assert [(q.name, q.sql, q.params) for q in queries.values()] == [
        ("one", "SELECT 1", ()),
        ("two", "SELECT $1", ("x",)),
    ]
    with pytest.raises(ValueError, match="named twice"):
        parse("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_every_sql_file_loads_with_at_least_one_query(path) -> None:  # type: ignore[no-untyped-def]
    queries = list(load(path.stem))
    assert queries, f"{path.name} names no query"
    assert all(q.sql and "--" not in q.sql.splitlines()[0] for q in queries)
