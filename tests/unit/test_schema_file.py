"""`schema.graphql` at the repo root is the printed schema; this fails when the two drift."""

import subprocess
import sys
from pathlib import Path

import pytest

from app.api.schema import print_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == print_sdl(), (
        "schema.graphql is stale: regenerate it with `hookql schema > schema.graphql`"
    )


@pytest.mark.integration  # a subprocess
def test_hookql_schema_prints_the_same_sdl() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "schema"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == print_sdl()
