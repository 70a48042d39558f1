"""The world of tests/hostile/test_hostile.py: a real `hookql serve` subprocess for the hostile seller to
attack, and the neighbours who must not notice — a /healthz watcher and another owner's webhook
with its receiver and a prober that times commit → receipt.

The neighbours live on an event loop of their own thread (`SideLoop`), so the attacker's traffic
in the test's own loop neither delays their clocks nor their receipts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # imports and migrations on a busy 2-core machine
STOP_TIMEOUT_S = 15.0  # serve's own shutdown bound is 10 s
# serve may not take more address space than this: an undefended attack (a 20-level operator
# query reached 16 GB) then fails the test with a MemoryError instead of exhausting the machine.
SERVE_ADDRESS_SPACE_BYTES = 6 * 2**30
HEALTH_EVERY_S = 0.05
HEALTH_TIMEOUT_S = 2.0  # a /healthz slower than this is recorded as taking this long, and failed
PROBE_EVERY_S = 0.15  # pause between two neighbour deliveries
PROBE_TIMEOUT_S = 5.0  # a neighbour delivery later than this is recorded as missed
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def global_id(type_name: str, id_: int) -> str:
    return base64.b64encode(f"{type_name}:{id_}".encode()).decode()


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SERVE_ADDRESS_SPACE_BYTES, SERVE_ADDRESS_SPACE_BYTES))


class ServeProcess:
    """`python -m app.cli serve` on a free port, settings through HOOKQL_* variables, output to a
    log file the tests read (tracebacks). It runs in a session of its own, so that a stop also
    ends any process it started (an engine child), and nothing else."""

    def __init__(self, database_url: str, settings: dict[str, str], log_path: Path) -> None:
        self.database_url = database_url
        self.settings = settings
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **self.settings,
            "HOOKQL_DATABASE_URL": self.database_url,
            "HOOKQL_PORT": str(self.port),
            "HOOKQL_DATA_DIR": str(self.log_path.parent / "data"),  # never the developer's ./.hookql
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
                preexec_fn=_limit_address_space,
            )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log_tail()}")
            if self.healthy(timeout_s=1.0):
                return
            time.sleep(0.1)
        raise RuntimeError(f"serve not healthy after {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def healthy(self, timeout_s: float) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=timeout_s) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its whole session after STOP_TIMEOUT_S."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what it left behind, if anything
        self.process.wait()

    def restart(self) -> None:
        """For a serve an earlier (failed) attack left stuck: kill it outright and start anew."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.start()

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_since(0) if self.log_path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:]) + f" (log: {self.log_path})"

    def cpu_s(self) -> float:
        """CPU seconds serve's own process has used (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return ticks / os.sysconf("SC_CLK_TCK")


class SideLoop:
    """An event loop in a thread of its own, for the neighbours."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="neighbours", daemon=True)

    def start(self) -> SideLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run `coro` on the side loop from synchronous code (fixtures)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the side loop from the test's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


class _Server:
    """An aiohttp server on 127.0.0.1 with one catch-all handler."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ProbeReceiver(_Server):
    """Answers 200 at once; resolves the futures of markers awaited in bodies, with the receipt time
    (`time.monotonic()`)."""

    def __init__(self) -> None:
        super().__init__()
        self._awaited: dict[str, asyncio.Future[float]] = {}
        self.requests = 0

    def expect(self, marker: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._awaited[marker] = future
        return future

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        body = (await request.read()).decode(errors="replace")
        self.requests += 1
        for marker in [m for m in self._awaited if m in body]:
            future = self._awaited.pop(marker)
            if not future.done():
                future.set_result(received_at)
        return web.Response(text="ok")


@dataclass
class NeighbourReport:
    """What the neighbours saw while an attack ran."""

    health_s: list[float] = field(default_factory=list)  # each /healthz round trip
    health_failures: list[str] = field(default_factory=list)
    delivery_s: list[float] = field(default_factory=list)  # each commit → receipt
    deliveries_missed: int = 0

    @property
    def max_health_s(self) -> float:
        return max(self.health_s, default=0.0)

    @property
    def max_delivery_s(self) -> float:
        return max(self.delivery_s, default=0.0)

    def summary(self) -> str:
        return (
            f"/healthz: {len(self.health_s)} polls, max {self.max_health_s * 1000:.0f} ms, "
            f"failures {self.health_failures[:3]}; neighbour deliveries: {len(self.delivery_s)}, "
            f"max {self.max_delivery_s * 1000:.0f} ms, missed {self.deliveries_missed}"
        )


# /healthz polled every `every_s` until its stdin closes; prints "<seconds> <status or error>" per poll.
HEALTH_POLLER = """
import sys, threading, time, urllib.request
url, every_s, timeout_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while True:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            resp.read()
            outcome = str(resp.status)
    except Exception as exc:
        outcome = type(exc).__name__
    print(f"{time.monotonic() - started:.6f} {outcome}", flush=True)
    if done.wait(every_s):
        break
"""


class Neighbours:
    """The operator's webhook on an invoice of another seller, and /healthz, as seen from the side
    loop. `watching()` polls /healthz every HEALTH_EVERY_S and sends one neighbour delivery after
    another (a new invoice amendment carrying a unique marker, timed from its COMMIT to its
    receipt) until the block ends."""

    def __init__(self, side: SideLoop, database_url: str, invoice_id: int) -> None:
        self.side = side
        self.database_url = database_url
        self.invoice_id = invoice_id
        self.receiver = ProbeReceiver()
        self.base_url = ""  # the serve to watch; set by the fixture (a restart changes its port)
        self._conn: asyncpg.Connection | None = None
        self._session: aiohttp.ClientSession | None = None
        self._markers = itertools.count(1)
        self._tag = uuid.uuid4().hex[:6]

    async def start(self) -> None:
        await self.receiver.start()
        self._conn = await asyncpg.connect(self.database_url)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._conn is not None:
            await self._conn.close()
        await self.receiver.stop()

    async def deliver_once(self) -> float | None:
        """Commit a change the operator's webhook hears; seconds until its receipt, or None."""
        assert self._conn is not None
        marker = f"neighbour-{self._tag}-{next(self._markers)}"
        arrival = self.receiver.expect(marker)
        await self._conn.execute(
            "INSERT INTO invoice_amendments (invoice_id, reason, amount) VALUES ($1, $2, 0)", self.invoice_id, marker
        )
        committed_at = time.monotonic()
        try:
            return await asyncio.wait_for(arrival, PROBE_TIMEOUT_S) - committed_at
        except TimeoutError:
            return None

    async def time_graphql(self, key: str, query: str, seconds: float) -> list[Reply]:
        """Another key's requests, one after another for `seconds`, timed from the side loop."""
        assert self._session is not None
        replies = []
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            replies.append(await post_graphql(self._session, self.base_url, key, query, timeout_s=10.0))
            await asyncio.sleep(0.1)
        return replies

    async def _poll_health(self, report: NeighbourReport, stop: asyncio.Event) -> None:
        """Poll /healthz from a process of its own: timed in this process, the figure would also
        count the time this thread waits for the GIL while the test's own loop works."""
        url = self.base_url + "/healthz"
        argv = [sys.executable, "-c", HEALTH_POLLER, url, str(HEALTH_EVERY_S), str(HEALTH_TIMEOUT_S)]
        poller = await asyncio.to_thread(
            subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            await stop.wait()
        finally:
            # end of file on its stdin ends the poller after the poll under way
            out, _ = await asyncio.to_thread(poller.communicate, "", HEALTH_TIMEOUT_S + 5)
        for line in out.splitlines():
            took_s, outcome = line.split(" ", 1)
            report.health_s.append(float(took_s))
            if outcome != "200":
                report.health_failures.append(outcome)

    async def _probe_deliveries(self, report: NeighbourReport, stop: asyncio.Event, at_least: int) -> None:
        while not stop.is_set() or len(report.delivery_s) + report.deliveries_missed < at_least:
            took = await self.deliver_once()
            if took is None:
                report.deliveries_missed += 1
            else:
                report.delivery_s.append(took)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)

    async def _watch(self, report: NeighbourReport, stop: asyncio.Event, at_least: int) -> None:
        await asyncio.gather(self._poll_health(report, stop), self._probe_deliveries(report, stop, at_least))

    @contextlib.asynccontextmanager
    async def watching(self, at_least: int = 2) -> AsyncIterator[NeighbourReport]:
        """Watch while the block runs (and until `at_least` neighbour deliveries were timed)."""
        report = NeighbourReport()
        stop = asyncio.Event()  # used (waited on, set) on the side loop only
        running = asyncio.run_coroutine_threadsafe(self._watch(report, stop, at_least), self.side.loop)
        try:
            yield report
        finally:
            self.side.loop.call_soon_threadsafe(stop.set)
            await asyncio.wrap_future(running)
            print(f"neighbours: {report.summary()}")  # shown with a failure's captured output


GRAPHQL_TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None  # None: not JSON
    elapsed_s: float

    @property
    def data(self) -> dict[str, Any]:
        assert self.body is not None and self.body.get("data") is not None, self.brief()
        data: dict[str, Any] = self.body["data"]
        return data

    @property
    def error_messages(self) -> list[str]:
        return [str(e.get("message")) for e in (self.body or {}).get("errors") or []]

    def brief(self) -> str:
        return f"HTTP {self.status} after {self.elapsed_s:.2f} s: {str(self.body)[:400]}"


async def post_graphql(
    session: aiohttp.ClientSession,
    base_url: str,
    key: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    timeout_s: float = GRAPHQL_TIMEOUT_S,
    parse_ok: bool = True,
) -> Reply:
    """One POST to /graphql, timed; the body is read whole, and parsed unless it is a 200 and
    `parse_ok` is false (a flood's client has no use for the data, and parsing it costs the
    test's own CPU)."""
    started = time.monotonic()
    async with session.post(
        base_url + "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        await resp.read()
        elapsed = time.monotonic() - started
        if resp.status == 200 and not parse_ok:
            return Reply(resp.status, dict(resp.headers), None, elapsed)
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        return Reply(resp.status, dict(resp.headers), body if isinstance(body, dict) else None, elapsed)


async def api(
    session: aiohttp.ClientSession, base_url: str, key: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A well-behaved client's call (set-up and checks, not attacks): it waits out a 429's
    Retry-After and asserts the request executed."""
    for _ in range(10):
        reply = await post_graphql(session, base_url, key, query, variables)
        if reply.status != 429:
            return reply.data
        await asyncio.sleep(min(float(reply.headers.get("Retry-After", "1")), 2.0))
    raise AssertionError(f"still refused with 429 after 10 polite tries: {reply.brief()}")


LIMIT_WORDS = re.compile(r"depth|alias|cost|complex|limit|exceed|too (many|large|deep|costly)", re.I)
BUDGET_WORDS = re.compile(r"budget|time|deadline|exceed|too large|limit|bytes", re.I)
