"""`schema.graphql` at the repo root is the printed schema; this fails when the two drift."""

from pathlib import Path

from app.api.schema import print_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == print_sdl(), (
        "schema.graphql is stale: regenerate it with `hookql schema > schema.graphql`"
    )
