"""`hookql listen --forward-to URL`, in the manner of Stripe's CLI: the server hands this process
each delivery of a webhook over the GraphQL websocket — the exact body and signed Standard Webhooks
headers a real delivery carries — and this process POSTs it to the local URL and reports the answer,
which the server records as the attempt (2xx delivers; anything else retries as usual). The server
never connects to the local URL, so this works with private targets disallowed and against a
remote server.

The webhook is a temporary one (`--type`, `--query`, `--events`), deleted when this process exits
— or by the server soon after it dies, when its hold on the webhook lapses unrenewed — or an
existing one (`--webhook ID`), delivered over HTTP again once this process stops."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp

from app.client.graphql import ClientError, GraphQLClient, ServerUnreachable, SubscriptionLost

REPORTED_BODY_BYTES = 4096  # of the local answer: what the server keeps of any attempt's answer
RECONNECT_DELAY_S = 1.0  # after the websocket drops, before opening it again
STOP_TIMEOUT_S = 5.0  # on exit, how long to wait for the server to delete (or release) the webhook

HELD = "webhook { id name type url } secret listenUntil renewEverySeconds errors { field message }"
LISTEN = f"mutation($input: WebhookListenInput!) {{ webhookListen(input: $input) {{ {HELD} }} }}"
RENEW = "mutation($id: ID!) { webhookListenRenew(webhookId: $id) { listenUntil errors { field message } } }"
STOP = "mutation($id: ID!) { webhookListenStop(webhookId: $id) { deleted errors { field message } } }"
REPORT = """mutation($input: WebhookListenReportInput!) { webhookListenReport(input: $input) {
  event { status nextAttemptAt } errors { field message } } }"""
DELIVERIES = """subscription($id: ID!) { webhookListenDeliveries(webhookId: $id) {
  id eventId event sequence attempt method headers { name value } body timeoutSeconds } }"""


@dataclass(frozen=True)
class ListenOptions:
    forward_to: str
    webhook_id: str | None = None  # attach to this webhook; else a temporary one of `type`
    type: str | None = None  # INVOICE, VARIANT, REFUND_REQUEST
    query: str | None = None
    events: tuple[str, ...] | None = None  # CREATED, UPDATED, DELETED
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class LocalAnswer:
    """What the local URL answered: a status (with headers and the first 4 KiB), or an error."""

    duration_ms: int
    status_code: int | None = None
    headers: dict[str, str] | None = None
    body: str = ""
    error: str | None = None


def check_forward_to(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"--forward-to needs an http:// or https:// URL, got {url!r}")
    return url


def _problem(payload: dict[str, Any]) -> str | None:
    errors = payload.get("errors") or []
    return f"{errors[0]['field']}: {errors[0]['message']}" if errors else None


async def forward(session: aiohttp.ClientSession, url: str, delivery: dict[str, Any]) -> LocalAnswer:
    """Make the delivery's request to the local URL — its method, headers and body unchanged —
    within its timeout, keeping the first 4 KiB of the answer. Never raises for the target's
    failures: they are the answer."""
    t0 = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - t0) * 1000)

    timeout_s = float(delivery["timeoutSeconds"])
    try:
        async with session.request(
            delivery["method"],
            url,
            data=delivery["body"].encode(),
            headers=[(h["name"], h["value"]) for h in delivery["headers"]],
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            body = await resp.content.read(REPORTED_BODY_BYTES)
            return LocalAnswer(
                duration_ms=elapsed_ms(),
                status_code=resp.status,
                headers={str(k): v for k, v in resp.headers.items()},
                body=body.decode("utf-8", errors="replace"),
            )
    except TimeoutError:
        return LocalAnswer(elapsed_ms(), error=f"timeout after {timeout_s:g} s")
    except aiohttp.ClientConnectorError as exc:
        return LocalAnswer(elapsed_ms(), error=f"connection failed: {exc.os_error.strerror or exc.os_error}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return LocalAnswer(elapsed_ms(), error=f"{type(exc).__name__}: {exc}")


def delivery_line(delivery: dict[str, Any], answer: LocalAnswer, outcome: str, url: str) -> str:
    """One line per delivery: when, what, the local answer and what the server made of it."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    local = f"[{answer.status_code}]" if answer.status_code is not None else f"[{answer.error}]"
    return (
        f"{stamp}  --> {delivery['event']} [{delivery['eventId']}] seq {delivery['sequence']}"
        f" try {delivery['attempt']}  <-- {local} {delivery['method']} {url} ({answer.duration_ms} ms): {outcome}"
    )


class Listener:
    """One `hookql listen` run: hold, stream, forward, report, renew; release on stop."""

    def __init__(self, client: GraphQLClient, options: ListenOptions, out: TextIO = sys.stdout) -> None:
        self.client = client
        self.options = options
        self.out = out
        self.webhook_id = ""
        self._inflight: set[asyncio.Task[None]] = set()

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def hold(self) -> dict[str, Any]:
        o = self.options
        given: dict[str, Any] = {"forwardTo": o.forward_to}
        if o.webhook_id is not None:
            given["webhookId"] = o.webhook_id
        else:
            given["type"] = o.type
            if o.query is not None:
                given["query"] = o.query
            if o.events is not None:
                given["events"] = list(o.events)
            if o.timeout_seconds is not None:
                given["timeoutSeconds"] = o.timeout_seconds
        held: dict[str, Any] = (await self.client.execute(LISTEN, {"input": given}))["webhookListen"]
        problem = _problem(held)
        if problem:
            if problem == "webhookId: webhook not found":
                raise ClientError(f"webhook {o.webhook_id} not found (or not visible to this API key)")
            raise ClientError(f"cannot listen: {problem}")
        self.webhook_id = held["webhook"]["id"]
        return held

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (a signal) or something fails for good (ClientError)."""
        held = await self.hold()
        hook = held["webhook"]
        kind = "a temporary webhook" if held["secret"] else "webhook"
        to = self.options.forward_to
        self.say(f"Ready! Forwarding the deliveries of {kind} {hook['id']} ({hook['type']}) to {to}")
        if held["secret"]:
            self.say(f"Its signing secret is {held['secret']} (Ctrl-C to stop; the webhook is deleted then)")
        else:
            self.say("Ctrl-C to stop; the webhook is delivered over HTTP again then")
        try:
            async with aiohttp.ClientSession() as local:
                tasks = {
                    asyncio.create_task(self._renew(float(held["renewEverySeconds"])), name="listen-renew"),
                    asyncio.create_task(self._stream(local), name="listen-stream"),
                    asyncio.create_task(stop.wait(), name="listen-stop"),
                }
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks | self._inflight:
                        task.cancel()
                    await asyncio.gather(*tasks, *self._inflight, return_exceptions=True)
                for task in done:
                    task.result()  # a ClientError of the renewal or the stream ends the run
        finally:
            await self.release()

    async def release(self) -> None:
        if not self.webhook_id:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                stopped = (await self.client.execute(STOP, {"id": self.webhook_id}))["webhookListenStop"]
        except (ClientError, TimeoutError) as exc:
            self.say(f"Could not release webhook {self.webhook_id} ({exc}); the server does when its hold lapses")
            return
        if stopped["deleted"]:
            self.say(f"Stopped: temporary webhook {self.webhook_id} deleted")
        elif not stopped["errors"]:
            self.say(f"Stopped: webhook {self.webhook_id} is delivered over HTTP again")

    async def _renew(self, every_s: float) -> None:
        """Keep the hold; an unreachable server is tried again every second (the hold outlasts
        two missed renewals), until the server says the hold is gone."""
        delay_s = every_s
        while True:
            await asyncio.sleep(delay_s)
            try:
                renewed = (await self.client.execute(RENEW, {"id": self.webhook_id}))["webhookListenRenew"]
            except ServerUnreachable as exc:
                if delay_s == every_s:
                    self.say(f"Cannot renew the hold ({exc}); retrying")
                delay_s = min(every_s, RECONNECT_DELAY_S)
                continue
            delay_s = every_s
            problem = _problem(renewed)
            if problem:
                raise ClientError(f"lost webhook {self.webhook_id}: {problem}")

    async def _stream(self, local: aiohttp.ClientSession) -> None:
        connected = True
        while True:
            try:
                async for data in self.client.subscribe(DELIVERIES, {"id": self.webhook_id}):
                    if not connected:
                        self.say("Connected again")
                        connected = True
                    delivery = data["webhookListenDeliveries"]
                    task = asyncio.create_task(self._handle(local, delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
            except (SubscriptionLost, ServerUnreachable) as exc:
                if connected:
                    self.say(f"Connection lost ({exc}); reconnecting")
                connected = False
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _handle(self, local: aiohttp.ClientSession, delivery: dict[str, Any]) -> None:
        answer = await forward(local, self.options.forward_to, delivery)
        report: dict[str, Any] = {"eventId": delivery["id"], "durationMs": answer.duration_ms}
        if answer.status_code is not None:
            report |= {"statusCode": answer.status_code, "responseHeaders": answer.headers or {},
                       "responseBody": answer.body}
        else:
            report["error"] = answer.error
        try:
            reported = (await self.client.execute(REPORT, {"input": report}))["webhookListenReport"]
        except ClientError as exc:
            self.say(delivery_line(delivery, answer, f"not recorded ({exc})", self.options.forward_to))
            return
        problem = _problem(reported)
        outcome = f"not recorded ({problem})" if problem else _outcome(reported["event"])
        self.say(delivery_line(delivery, answer, outcome, self.options.forward_to))


def _outcome(event: dict[str, Any] | None) -> str:
    if event is None:
        return "recorded"
    status = str(event["status"]).lower()
    if status == "pending" and event.get("nextAttemptAt"):
        return f"retrying at {event['nextAttemptAt']}"
    return status


async def listen(client: GraphQLClient, options: ListenOptions, stop: asyncio.Event,
                 out: TextIO = sys.stdout) -> None:
    check_forward_to(options.forward_to)
    await Listener(client, options, out).run(stop)


