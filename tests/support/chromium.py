"""A headless Chromium driven over the DevTools protocol, for the browser tier (tests/browser).

`browser_page(offline=True)` cuts the browser off from everything but 127.0.0.1: every other host
resolves to nothing and every other connection goes through a proxy that does not exist. The page
records the URL of every request and websocket it opens (`Page.requests`), so a test can assert
that nothing left the machine."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

# Network off: no name resolves except 127.0.0.1 itself, and any connection that is not to a
# loopback address (Chromium never proxies those) goes to a proxy on port 9 (discard), where
# nothing listens.
OFFLINE_ARGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loads = 0
        self._load_event = asyncio.Event()
        self.requests: list[str] = []  # URL of every request and websocket, once Network is enabled
        # console messages and uncaught exceptions (once Runtime is enabled) and the browser's own
        # messages, such as Content-Security-Policy refusals (once Log is enabled)
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._waiting.pop(message["id"])
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message.get("result", {}))
            elif message.get("method") == "Page.loadEventFired":
                self._loads += 1
                self._load_event.set()
            elif message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message.get("method") == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])
            elif message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"]["args"]
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif message.get("method") == "Log.entryAdded":
                self.console.append(message["params"]["entry"]["text"])
            elif message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                thrown = details.get("exception", {}).get("description", details.get("text"))
                self.console.append(f"uncaught: {thrown}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 15)

    async def loading(self, method: str, **params: Any) -> None:
        """Run a call that makes the page load a new document, and wait for it to finish loading."""
        before = self._loads
        await self.send(method, **params)
        async with asyncio.timeout(15):
            while self._loads == before:
                self._load_event.clear()
                await self._load_event.wait()

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"])
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        script = f"document.querySelector({json.dumps(selector)}).click()"
        await self.loading("Runtime.evaluate", expression=script)

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()


@contextlib.asynccontextmanager
async def browser_page(offline: bool = False) -> AsyncIterator[Page]:
    """A fresh Chromium (own profile) and its first page; `offline`: see OFFLINE_ARGS."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium/chrome executable on PATH (Debian: apt-get install -y chromium)")
    # Chromium's helper processes may still be flushing the profile as the directory goes.
    with tempfile.TemporaryDirectory(prefix="hookql-chromium-", ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            executable,
            "--headless",
            "--no-sandbox",  # containers and CI runners usually lack user namespaces
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            *(OFFLINE_ARGS if offline else ()),
            "about:blank",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its helpers too
        )
        try:
            page_url = await _first_page_websocket(Path(profile) / "DevToolsActivePort")
            ws = await websockets.connect(page_url, max_size=None)
            page = Page(ws)
            try:
                await page.send("Page.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                await page.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


def _devtools_port(port_file: Path) -> int | None:
    text = port_file.read_text() if port_file.exists() else ""
    return int(text.split()[0]) if text.strip() else None


async def _first_page_websocket(port_file: Path) -> str:
    """Chromium writes its DevTools port into the profile once it listens; then list its pages."""
    for _ in range(600):
        port = _devtools_port(port_file)
        if port:
            break
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError("chromium did not open its DevTools port within 30 s")
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            await asyncio.sleep(0.05)
    raise TimeoutError("chromium opened no page")
