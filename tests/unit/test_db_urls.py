"""Database URLs are redacted and retargeted; the embedded server explains an unusable data dir
before it starts anything."""

from pathlib import Path

import pytest

from app.store import db


def test_an_unusable_data_dir_gets_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        pytest.raises(db.DatabaseError, match=r"data directory .* is unusable"),
        db.embedded_server(blocker / "x"),
    ):
        pass


def test_urls_are_redacted_and_retargeted() -> None:
    assert db.redact("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert db.with_database("postgresql://u@h:5432/postgres", "other") == "postgresql://u@h:5432/other"
    assert (
        db.with_database("postgresql://postgres:@/postgres?host=/tmp/s", "x") == "postgresql://postgres:@/x?host=/tmp/s"
    )



def test_an_unparseable_url_is_redacted_whole() -> None:
    assert db.redact("postgresql://u:secret@[::1/d") == "<unparseable URL>"  # an unclosed IPv6 bracket
    assert db.redact("postgresql://u:secret@h:notaport/d") == "postgresql://u:***@h:notaport/d"


def test_text_quoted_in_an_error_line_is_one_short_line() -> None:
    assert db.one_line("a\n  b\x01c") == "a b\\x01c"
    assert db.one_line("x" * 500) == "x" * 199 + "…"
