"""`hookql demo`: a self-contained tour on a throwaway embedded database.

It loads the sample marketplace, starts a local receiver that verifies every signature the way
an integrator would (the `standardwebhooks` library), starts the engine in-process, registers two
webhooks through the GraphQL API, then plays shop — orders, payments, shipments, refunds, stock
and price changes — printing each delivery as it arrives and a summary at the end. Ctrl-C ends
it early, cleanly (the summary still prints)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

import asyncpg
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config import Settings
from app.store import db
from app.store import demo as demo_store
from app.types import OPERATOR

DRAIN_TIMEOUT_S = 15.0  # after the activity stops, how long to wait for the last deliveries
ACTIONS_PER_S = 4.0
# A repriced variant's stock is left alone this long, past the demo's longest hold (max_delay_ms
# 1500), so the price change is evaluated alone and its skip is what the tour says it is.
QUIET_AFTER_REPRICE_S = 3.0

ERP_QUERY = """query($id: ID!) { node(id: $id) { ... on Invoice {
  id status total { formatted } lineItems { quantity } shipments { status trackingNumber } } } }"""
# Selects the stock level only: a price change of a variant already sent re-evaluates it, finds
# the same payload and is SKIPPED — the receiver hears only about what it asked for.
STOCK_QUERY = "query($id: ID!) { variant(id: $id) { id sku countOnHand } }"

CREATE_WEBHOOK = """mutation($input: WebhookCreateInput!) {
  webhookCreate(input: $input) { webhook { id legacyId name } secret errors { field message } }
}"""


@dataclasses.dataclass
class DemoSummary:
    seconds: float = 0.0
    actions: int = 0
    changes: int = 0
    events: Counter[str] = dataclasses.field(default_factory=Counter)
    received: int = 0
    verified: int = 0
    coalesced: int = 0
    unsent: Counter[str] = dataclasses.field(default_factory=Counter)  # skipped/superseded events shown
    startup_s: float = 0.0  # the embedded PostgreSQL, migrations, fixtures, engine and webhooks
    total_s: float = 0.0

    @property
    def deliveries(self) -> int:
        return self.events["delivered"]


class Receiver:
    """The integrator's side: an HTTP endpoint per webhook that checks the signature."""

    def __init__(self, out: TextIO) -> None:
        self.secrets: dict[str, str] = {}  # path -> whsec_…
        self.names: dict[str, str] = {}
        self.received = 0
        self.verified = 0
        self._out = out
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["hook"]
        body = await request.read()
        self.received += 1
        secret = self.secrets.get(path)
        try:
            if secret is None:
                raise WebhookVerificationError("unknown endpoint")
            delivery = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            print(f"  ✗ {path}: signature REJECTED ({exc})", file=self._out, flush=True)
            return web.Response(status=400, text="bad signature")
        self.verified += 1
        print(
            f"  ← {self.names.get(path, path):<10} {describe(delivery)}  ✓ signature verified",
            file=self._out,
            flush=True,
        )
        return web.Response(status=204)


def describe(delivery: dict[str, Any]) -> str:
    """One line for a delivery body: event, sequence and the interesting fields of the payload."""
    data = (delivery.get("payload") or {}).get("data") or {}
    node = data.get("node") or data.get("variant") or {}
    detail = ""
    if "status" in node:
        total = (node.get("total") or {}).get("formatted", "")
        shipped = [s["status"] for s in node.get("shipments") or []]
        detail = f"{node['status']:<17} {total:>10}  items {len(node.get('lineItems') or [])}"
        detail += f"  shipments {','.join(shipped)}" if shipped else ""
    elif "sku" in node:
        detail = f"{node['sku']:<17} on hand {node['countOnHand']}"
    elif not node:
        detail = "(gone)"
    return f"{delivery.get('event', '?'):<24} seq {delivery.get('sequence', '?'):<4} {detail}"


# --- the shop ------------------------------------------------------------------------------------


class Shop:
    """Simulated marketplace activity (`app.store.demo`), with the random choices made here."""

    def __init__(self, conn: asyncpg.Connection, rng: random.Random, stock_feed_id: int) -> None:
        self.conn = conn
        self.rng = rng
        self.stock_feed_id = stock_feed_id
        self._quiet_until: dict[int, float] = {}  # variant id -> monotonic time its stock may change again

    async def new_order(self) -> str:
        variants = await demo_store.variants_to_sell(self.conn, 2)
        if not variants:
            return "no variants to sell"
        buyer = self.rng.choice(["Ada", "Grace", "Linus", "Margaret", "Ken"])
        lines = [(v, self.rng.randint(1, 3)) for v in variants]
        order, invoice = await demo_store.place_order(self.conn, buyer, "buyer@example.com", lines)
        return f"order #{order} → invoice #{invoice}"

    async def pay(self) -> str:
        invoice = await demo_store.any_invoice_in_status(self.conn, "pending")
        if invoice is None:
            return await self.new_order()
        await demo_store.set_invoice_status(self.conn, invoice, "paid")
        return f"invoice #{invoice} paid"

    async def ship(self) -> str:
        invoice = await demo_store.any_invoice_in_status(self.conn, "paid")
        if invoice is None:
            return await self.pay()
        # A burst: three writes to one invoice within milliseconds, coalesced into one delivery.
        await demo_store.ship_invoice(self.conn, invoice, f"JD{self.rng.randint(10**9, 10**10 - 1)}")
        return f"invoice #{invoice} shipped"

    async def refund(self) -> str:
        line = await demo_store.any_refundable_line(self.conn)
        if line is None:
            return await self.pay()
        await demo_store.request_refund(self.conn, line, "arrived damaged")
        return f"refund requested on invoice #{line.invoice_id}"

    async def stock(self) -> str:
        now = time.monotonic()
        quiet = [v for v, until in self._quiet_until.items() if until > now]
        variant = await demo_store.any_variant(self.conn, stocked=True, excluded_ids=quiet)
        if variant is None:
            return "no stock to change"
        delta = self.rng.choice([-3, -1, -1, 2, 5])
        await demo_store.change_stock(self.conn, variant.id, delta)
        return f"stock of {variant.sku} {delta:+d}"

    async def reprice(self) -> str:
        # A variant the Stock feed has been sent: one it has never heard of would be news (its
        # first payload), whatever changed.
        variant = await demo_store.variant_known_to(self.conn, self.stock_feed_id)
        if variant is None:
            return await self.stock()
        self._quiet_until[variant.id] = time.monotonic() + QUIET_AFTER_REPRICE_S
        await demo_store.raise_price(self.conn, variant.id)
        return f"price of {variant.sku} +5% (the Stock feed selects no price: expect a skip ·)"

    async def step(self) -> str:
        action: Callable[[], Any] = self.rng.choices(
            [self.new_order, self.pay, self.ship, self.refund, self.stock, self.reprice],
            weights=[3, 3, 2, 1, 3, 1],
        )[0]
        return str(await action())


# --- the tour ------------------------------------------------------------------------------------

async def _register(schema: Any, context: Any, receiver: Receiver, name: str, type_: str, query: str) -> int:
    """Create the webhook through the GraphQL API; returns its numeric id."""
    path = name.lower().replace(" ", "-")
    result = await schema.execute(
        CREATE_WEBHOOK,
        variable_values={"input": {"name": name, "url": f"{receiver.base_url}/{path}", "type": type_, "query": query}},
        context_value=context,
    )
    if result.errors:
        raise RuntimeError(f"webhookCreate failed: {result.errors}")
    payload = result.data["webhookCreate"]
    if payload["errors"]:
        raise RuntimeError(f"webhookCreate refused: {payload['errors']}")
    receiver.secrets[path] = payload["secret"]
    receiver.names[path] = name
    return int(payload["webhook"]["legacyId"])


class UnsentReporter:
    """Prints each event that ends without a request (skipped, superseded) once: the receiver
    sees its sequence number missing, and this line says why."""

    def __init__(self, summary: DemoSummary, say: Callable[[str], None]) -> None:
        self._reported: set[int] = set()
        self._summary = summary
        self._say = say

    async def report(self, conn: asyncpg.Connection) -> None:
        for e in await demo_store.unsent_events(conn, sorted(self._reported)):
            self._reported.add(e.id)
            self._summary.unsent[e.status] += 1
            if e.status == "skipped":
                why = "skipped: same payload as the last one sent, not sent"
            else:
                by = f" by seq {e.superseded_by_sequence}" if e.superseded_by_sequence else ""
                why = f"superseded{by}: a newer change came first; only the newer state is sent"
            self._say(f"  · {e.webhook:<10} {e.event:<24} seq {e.sequence:<4} {e.entity:<17} {why}")


async def _summary(conn: asyncpg.Connection, summary: DemoSummary) -> None:
    summary.changes = await demo_store.changes_captured(conn)
    summary.events = Counter(await demo_store.events_by_status(conn))
    # Each watched change would be one event without coalescing; the difference was folded away.
    watched = await demo_store.watched_changes_captured(conn)
    summary.coalesced = max(0, watched - sum(summary.events.values()))


@contextlib.asynccontextmanager
async def _embedded(settings: Settings) -> AsyncIterator[tuple[Settings, str]]:
    with tempfile.TemporaryDirectory(prefix="hookql-demo-") as tmp:
        # Quick engine settings so the tour moves: short debounce, fast retries, local receiver.
        demo_settings = dataclasses.replace(
            settings,
            database_url=None,
            data_dir=Path(tmp),
            allow_private_targets=True,
            debounce_ms=min(settings.debounce_ms, 300),
            max_delay_ms=min(settings.max_delay_ms, 1500),
            retry_base_ms=min(settings.retry_base_ms, 1000),
            retry_max_ms=min(settings.retry_max_ms, 5000),
        )
        async with db.database_url(demo_settings) as url:
            yield demo_settings, url


async def run_demo(settings: Settings, seconds: int = 40, *, out: TextIO | None = None) -> DemoSummary:
    """Run the tour for `seconds` of activity, print as it goes, and return the summary."""
    from app.api.context import make_context
    from app.api.schema import schema
    from app.engine.runner import running_engine
    from app.store.fixtures import load_fixtures

    out = out or sys.stdout
    summary = DemoSummary()
    started = time.monotonic()
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    unsent = UnsentReporter(summary, say)
    say("hookql demo: starting a throwaway embedded PostgreSQL …")
    async with _embedded(settings) as (demo_settings, url):
        pool = await db.create_pool(url, min_size=2, max_size=10)
        receiver = Receiver(out)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
                counts = await load_fixtures(conn)
                await demo_store.start_counting_changes(conn)  # and the fixtures are not news
            say("loaded the sample marketplace: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
            await receiver.start()
            async with running_engine(
                pool=pool, database_url=url, settings=demo_settings, schema=schema, make_context=make_context
            ) as engine:
                context = make_context(pool, OPERATOR, demo_settings, transport=engine.transport)
                await _register(schema, context, receiver, "ERP sync", "INVOICE", ERP_QUERY)
                stock_feed = await _register(schema, context, receiver, "Stock feed", "VARIANT", STOCK_QUERY)
                summary.startup_s = time.monotonic() - started
                say(f"receiver on {receiver.base_url}; webhooks: ERP sync (invoices), Stock feed (variants)")
                say("each delivery prints as ← when the receiver gets it; · marks an event that is not sent")
                say(f"playing shop for {seconds} s (Ctrl-C ends early) …\n")
                await _play(pool, summary, seconds, say, stock_feed, unsent)
                say("\nactivity stopped; waiting for the last deliveries …")
                async with pool.acquire() as conn:
                    # Polling: the deliveries happen in the engine; the table is where they show.
                    for _ in range(int(DRAIN_TIMEOUT_S / 0.2)):
                        await unsent.report(conn)
                        if await demo_store.drained(conn):
                            break
                        await asyncio.sleep(0.2)
                    await unsent.report(conn)
        except (KeyboardInterrupt, asyncio.CancelledError):
            say("\ninterrupted; stopping …")
        finally:
            await receiver.stop()
            summary.received, summary.verified = receiver.received, receiver.verified
            with contextlib.suppress(Exception):  # a summary is best effort once interrupted
                async with pool.acquire() as conn:
                    await _summary(conn, summary)
            await pool.close()
    summary.total_s = time.monotonic() - started
    _print_summary(summary, say)
    return summary


async def _play(
    pool: asyncpg.Pool,
    summary: DemoSummary,
    seconds: float,
    say: Callable[[str], None],
    stock_feed_id: int,
    unsent: UnsentReporter,
) -> None:
    rng = random.Random(7)
    started = time.monotonic()
    async with pool.acquire() as conn:
        shop = Shop(conn, rng, stock_feed_id)
        while (elapsed := time.monotonic() - started) < seconds:
            what = await shop.step()
            summary.actions += 1
            pending = await demo_store.pending_events(conn)
            say(f"[{elapsed:5.1f}/{seconds:.0f} s] {summary.actions:>3} actions, {pending} pending: {what}")
            await unsent.report(conn)
            await asyncio.sleep(rng.expovariate(ACTIONS_PER_S))
    summary.seconds = time.monotonic() - started


def _print_summary(s: DemoSummary, say: Callable[[str], None]) -> None:
    e = s.events
    say("\n— summary —")
    say(f"  {s.actions} shop actions in {s.seconds:.0f} s → {s.changes} entity changes captured")
    say(f"  {s.coalesced} changes coalesced into bursts; {sum(e.values())} events evaluated")
    say(
        f"  {e['delivered']} delivered, {e['skipped']} skipped (identical payload),"
        f" {e['superseded']} superseded, {e['failed']} failed, {e['pending']} still pending"
    )
    say(f"  receiver: {s.received} requests, {s.verified} with a verified signature")
    say("  sequence numbers: a webhook numbers all its events 1, 2, 3 …, sent or not; the receiver")
    say(f"    sees a gap for each one marked · ({s.unsent['skipped']} skipped: nothing it selects changed;")
    say(f"    {s.unsent['superseded']} superseded: a newer state was sent instead)")
    say(f"  {s.total_s:.0f} s in all: {s.startup_s:.0f} s to start (PostgreSQL, sample data, webhooks),"
        f" {s.seconds:.0f} s of activity, then the last deliveries")
    say(f"  {json.dumps({'deliveries': s.deliveries, 'verified': s.verified})}")
