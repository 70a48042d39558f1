"""The benchmark receiver: a separate aiohttp process that answers 200 to every POST/PUT under
/hook/<name>, counts requests per name and records, for every body carrying a producer marker
(`bench-<n>`), when it arrived. Under /hang/<name> it answers nothing until told to (/release):
the receivers that never answer of the noisy-neighbour scenario.

It is one process for the whole run, so that L1 (raw POST/s) and the engine runs hit exactly the
same receiver. Run: `python -m bench.receiver` — it prints `PORT <n>` once it listens.

Receipt times are `time.monotonic()`: CLOCK_MONOTONIC on Linux is one clock for every process on
the machine, so the producer's commit times (taken in another process) compare with them."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from app import runtime

HOST = "127.0.0.1"
MARKER_RE = re.compile(rb"bench-(\d+)")
# The peers' workload (bench/peers) changes invoice statuses, which carry no marker: its
# deliveries are matched to commits by the invoice's `legacyId`, which every system's body holds.
INVOICE_KEY_RE = re.compile(rb'"legacyId"\s*:\s*(\d+)')
SECRET_PREFIX = "whsec_"
# A bound on what the receiver remembers per run (one entry ≈ 100 bytes): far above any
# scenario's delivery count, small enough that a runaway engine cannot exhaust memory.
MAX_RECEIPTS = 1_000_000
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 30.0  # /receipts of a long run is a few MB of JSON
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    count: int = 0
    body_bytes: int = 0  # sum over all requests: the mean shows what size the engine really sends
    by_name: dict[str, int] = field(default_factory=dict)
    # (marker, hook name, receipt time); all markers in a body (a payload may carry several)
    receipts: list[tuple[int, str, float]] = field(default_factory=list)
    last_marker_by_name: dict[str, int] = field(default_factory=dict)
    dropped_receipts: int = 0
    first_at: float | None = None
    last_at: float | None = None
    # Set by a /reset that names the webhooks' secrets (the peers' runs): every request's Standard
    # Webhooks signature is checked, and receipts are also kept by invoice (`INVOICE_KEY_RE`).
    keys: dict[str, bytes] = field(default_factory=dict)  # hook name → HMAC key
    verified: int = 0
    unverified: int = 0  # a signature missing or wrong, or a hook whose secret the receiver lacks
    invoice_receipts: list[tuple[int, str, float]] = field(default_factory=list)


def signature_ok(key: bytes, headers: Any, body: bytes) -> bool:
    """Standard Webhooks: `webhook-signature` holds `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`
    entries, space-separated; one that matches is enough."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return False
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (entry.partition(",") for entry in signatures.split())
    )


def hmac_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    except (binascii.Error, ValueError):
        return secret.encode()


@dataclass
class Hanging:
    """A receiver that never answers: each request is held unanswered until `released` is set, and
    answered 503 at once after it. Here it serves /hang/<name> (the noisy-neighbour scenario's
    receivers, released by /release, armed again by /reset); tests.support.receivers serves it
    in-process as the tests' HangingReceiver."""

    held: int = 0
    max_held: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold(self, request: web.Request) -> web.Response:
        await request.read()
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        try:
            await self.released.wait()
        finally:
            self.held -= 1
        return web.Response(status=503, text="released")


def build_app() -> web.Application:
    tally = Tally()
    hanging = Hanging()

    async def hook(request: web.Request) -> web.Response:
        now = time.monotonic()
        body = await request.read()
        name = request.match_info["name"]
        tally.count += 1
        tally.body_bytes += len(body)
        tally.by_name[name] = tally.by_name.get(name, 0) + 1
        if tally.first_at is None:
            tally.first_at = now
        tally.last_at = now
        if tally.keys:
            key = tally.keys.get(name)
            if key is not None and signature_ok(key, request.headers, body):
                tally.verified += 1
            else:
                tally.unverified += 1
            keyed = INVOICE_KEY_RE.search(body)
            if keyed and len(tally.invoice_receipts) < MAX_RECEIPTS:
                tally.invoice_receipts.append((int(keyed.group(1)), name, now))
        # One marker per delivery: the highest in the body is the newest state it carries.
        markers = [int(m) for m in MARKER_RE.findall(body)]
        if markers:
            marker = max(markers)
            tally.last_marker_by_name[name] = marker
            if len(tally.receipts) < MAX_RECEIPTS:
                tally.receipts.append((marker, name, now))
            else:
                tally.dropped_receipts += 1
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        # Counted in the run this request came in (a /reset starts new counts).
        return await hanging.hold(request)

    async def release(request: web.Request) -> web.Response:
        """Answer every held request (503), and any that comes later, until /reset."""
        hanging.released.set()
        return web.json_response({"held": hanging.held, "max_held": hanging.max_held})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "count": tally.count,
                "body_bytes": tally.body_bytes,
                "by_name": tally.by_name,
                "first_at": tally.first_at,
                "last_at": tally.last_at,
                "dropped_receipts": tally.dropped_receipts,
                "verified": tally.verified,
                "unverified": tally.unverified,
            }
        )

    async def receipts(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "receipts": tally.receipts,
                "last_marker_by_name": tally.last_marker_by_name,
                "invoice_receipts": tally.invoice_receipts,
            }
        )

    async def reset(request: web.Request) -> web.Response:
        """Start new counts; a JSON body `{"secrets": {name: secret}}` turns on signature checks
        and receipts by invoice for the run that follows."""
        nonlocal tally, hanging
        config = await request.json() if request.can_read_body else {}
        tally = Tally(keys={name: hmac_key(secret) for name, secret in (config.get("secrets") or {}).items()})
        hanging.released.set()  # anything still held from before
        hanging = Hanging()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_route("POST", "/hook/{name}", hook)
    app.router.add_route("PUT", "/hook/{name}", hook)
    app.router.add_route("POST", "/hang/{name}", hang)
    app.router.add_route("PUT", "/hang/{name}", hang)
    app.router.add_post("/release", release)
    app.router.add_get("/stats", stats)
    app.router.add_get("/receipts", receipts)
    app.router.add_post("/reset", reset)
    return app


async def serve(port: int) -> None:
    # Bind first, so the port printed is the one listening even when 0 asked for any port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()  # until the parent terminates us
    finally:
        await runner.cleanup()


class ReceiverProcess:
    """The parent's handle on the receiver process: start/stop, URLs, counters and receipts."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.receiver",
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT_S)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"the benchmark receiver did not start (said {line!r})")
        self.base_url = f"http://{HOST}:{int(line.split()[1])}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def hook_url(self, name: str) -> str:
        return f"{self.base_url}/hook/{name}"

    def hang_url(self, name: str) -> str:
        """A URL that never answers until `release_hanging()`."""
        return f"{self.base_url}/hang/{name}"

    async def release_hanging(self) -> dict[str, Any]:
        """Answer the held requests; how many were held now and at most since the last release."""
        assert self._session is not None
        async with self._session.post(self.base_url + "/release") as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def stats(self) -> dict[str, Any]:
        return await self._get("/stats")

    async def receipts(self) -> dict[str, Any]:
        return await self._get("/receipts")

    async def count(self) -> int:
        return int((await self.stats())["count"])

    async def reset(self, secrets: dict[str, str] | None = None) -> None:
        """New counts; with `secrets` (hook name → `whsec_…`), signatures are checked too."""
        assert self._session is not None
        body = {"secrets": secrets} if secrets else None
        async with self._session.post(self.base_url + "/reset", json=body) as resp:
            resp.raise_for_status()

    async def _get(self, path: str) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(self.base_url + path) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data


def main() -> None:
    parser = argparse.ArgumentParser(description="the hookql benchmark receiver")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        runtime.run(serve(args.port))


if __name__ == "__main__":
    main()
