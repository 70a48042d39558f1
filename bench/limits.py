"""The machine's own limits, measured before any engine runs; every engine figure is a ratio of
one of these.

- L1: raw aiohttp POST/s from this process to the benchmark receiver, with bodies and headers of
  the size the engine sends and the engine's concurrency: the fastest any delivery loop written
  with aiohttp could go here.
- L2: single-row INSERT+COMMIT/s with asyncpg into `variants` (capture triggers included), from
  as many connections as the producer uses: the fastest the producer can create changes.
- L3: NOTIFY→LISTEN round trip: the floor under the engine's wake-up latency."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import asyncpg

from bench.producer import PRODUCER_CONNECTIONS
from bench.receiver import ReceiverProcess
from bench.stats import percentile

L1_MAX_REQUESTS = 2_000_000  # a bound on the loop, far above what any machine sends in the window
L2_MAX_COMMITS = 1_000_000
L3_CHANNEL = "hookql_bench_l3"
L3_TIMEOUT_S = 5.0  # one lost notification must not hang the bench


def sample_bodies() -> list[dict[str, Any]]:
    """Delivery bodies shaped and sized like the engine's for the bench's three queries (taken
    from real deliveries: 480–900 bytes of JSON); L1 cycles through them as the engine does."""
    envelope = {
        "id": "evt_01M81J53VA75603P4CY2KC2JP9",
        "event_name": "update",
        "webhook_id": "V2ViaG9vazoy",
        "sequence": 1,
        "created_at": "2026-11-22T12:02:06.249512Z",
    }
    usd = {"currencyCode": "USD"}
    variant = {
        "id": "VmFyaWFudDox",
        "sku": "SKU-1-1",
        "hook": "Variant",
        "price": {"amount": "11.99", "formatted": "$11.99", **usd},
        "barcode": "bench-7",
        "product": {"title": "Product 1-1", "seller": {"name": "Bench Seller 1"}},
        "countOnHand": 100,
    }
    invoice = {
        "id": "SW52b2ljZTox",
        "hook": "Invoice",
        "total": {"amount": "202.99", "formatted": "$202.99", **usd},
        "status": "PAID",
        "lineItems": [
            {
                "status": "ALLOCATED",
                "variant": {"sku": f"SKU-{17 + 5 * i}-1"},
                "quantity": i + 1,
                "unitPrice": {"amount": f"{27 + 5 * i}.99", **usd},
            }
            for i in range(3)
        ],
        "shipments": [{"status": "IN_TRANSIT", "carrier": "DHL", "trackingNumber": "bench-8"}],
        "amendments": [{"amount": {"amount": "-4.95"}, "reason": "shipping refund"}],
    }
    refund = {
        "id": "UmVmdW5kUmVxdWVzdDox",
        "hook": "RefundRequest",
        "total": {"amount": "27.99", **usd},
        "reason": "bench-9",
        "status": "AWAITING",
        "lineItems": [{"amount": {"amount": "27.99", **usd}, "status": "AWAITING", "quantity": 1}],
    }
    return [
        {
            **envelope,
            "event": f"{kind}.updated",
            "entity": {"type": name, "id": node["id"]},
            "payload": {"data": {"node": node}},
        }
        for kind, name, node in (
            ("variant", "Variant", variant),
            ("invoice", "Invoice", invoice),
            ("refund_request", "RefundRequest", refund),
        )
    ]


# The engine's own headers (SPEC §5), with values of the real length, so request size matches.
SAMPLE_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "hookql/0.1.0",
    "webhook-id": "evt_01JD8Y4Q3M5X7Z9B1C2D3E4F5G",
    "webhook-timestamp": "1795860000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "Idempotency-Key": "evt_01JD8Y4Q3M5X7Z9B1C2D3E4F5G",
    "Webhook-Sequence": "1",
}


async def measure_l1(
    receiver: ReceiverProcess, *, concurrency: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    """POST/s over `duration_s` after `warmup_s`, with `concurrency` requests in flight."""
    bodies = [json.dumps(b, separators=(",", ":")).encode() for b in sample_bodies()]
    url = receiver.hook_url("l1")
    connector = aiohttp.TCPConnector(limit=concurrency)
    stop_at = time.monotonic() + warmup_s + duration_s
    counted_from = time.monotonic() + warmup_s
    counted = 0
    errors = 0
    sent = 0

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal counted, errors, sent
            while time.monotonic() < stop_at and sent < L1_MAX_REQUESTS:
                sent += 1
                body = bodies[sent % len(bodies)]
                try:
                    async with session.post(url, data=body, headers=SAMPLE_HEADERS) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if not ok:
                    errors += 1
                elif time.monotonic() >= counted_from:
                    counted += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "posts_per_s": counted / duration_s,
        "mean_body_bytes": round(sum(map(len, bodies)) / len(bodies)),
        "concurrency": concurrency,
        "duration_s": duration_s,
        "errors": errors,
    }


async def measure_l2(database_url: str, product_id: int, *, duration_s: float) -> dict[str, Any]:
    """Single-row INSERT+COMMIT/s into variants from PRODUCER_CONNECTIONS connections.
    The rows are left behind: the caller runs this on a scratch database."""
    conns = [await asyncpg.connect(database_url) for _ in range(PRODUCER_CONNECTIONS)]
    stop_at = time.monotonic() + duration_s
    commits = 0
    try:

        async def worker(conn: asyncpg.Connection, lane: int) -> None:
            nonlocal commits
            stmt = await conn.prepare("INSERT INTO variants (product_id, sku, price) VALUES ($1, $2, 9.99)")
            n = 0
            while time.monotonic() < stop_at and commits < L2_MAX_COMMITS:
                n += 1
                await stmt.fetch(product_id, f"l2-{lane}-{n}")  # autocommit: INSERT + COMMIT
                commits += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(c, i) for i, c in enumerate(conns)))
        elapsed = time.monotonic() - started
    finally:
        for conn in conns:
            await conn.close()
    return {"commits_per_s": commits / elapsed, "connections": PRODUCER_CONNECTIONS, "duration_s": elapsed}


async def measure_l3(database_url: str, *, samples: int, duration_s: float) -> dict[str, Any]:
    """NOTIFY (autocommit, from one connection) → callback on a LISTENing one, one at a time."""
    listener = await asyncpg.connect(database_url)
    notifier = await asyncpg.connect(database_url)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    def on_notify(conn: object, pid: int, channel: str, payload: str) -> None:
        arrived.put_nowait(time.monotonic())

    latencies_ms: list[float] = []
    lost = 0
    try:
        await listener.add_listener(L3_CHANNEL, on_notify)
        stop_at = time.monotonic() + duration_s
        for i in range(samples):
            if time.monotonic() > stop_at:
                break
            sent = time.monotonic()
            await notifier.execute(f"NOTIFY {L3_CHANNEL}, '{i}'")
            try:
                got = await asyncio.wait_for(arrived.get(), L3_TIMEOUT_S)
            except TimeoutError:
                lost += 1
                continue
            latencies_ms.append((got - sent) * 1000)
    finally:
        await listener.close()
        await notifier.close()
    return {
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "samples": len(latencies_ms),
        "lost": lost,
    }
