"""`hookql schema` prints the SDL the code defines (schema.graphql matches it: unit/test_schema_file.py)."""

import subprocess
import sys

from app.api.schema import print_sdl


def test_hookql_schema_prints_the_same_sdl() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "schema"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == print_sdl()

