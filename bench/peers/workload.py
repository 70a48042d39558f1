"""The peers' workload, identical for every system: the bench's marketplace, 20 webhooks on invoice
updates (all the operator's: every change is heard by all 20), and a producer that changes the
status of 10 invoices every 20 ms, cycling through all invoices — or, for latency, of one invoice
at a time at a fixed rate.

hookql hears a change through its capture triggers and its webhooks' GraphQL query (PEER_QUERY);
a peer hears it through a trigger on `invoices` that enqueues one job per (change, subscription)
in its own idiom, and its worker builds the same payload with ONE SQL statement (payload.sql)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import dataset

PEER_WEBHOOKS = 20
CHANGES_PER_TICK = 10  # invoices whose status one producer statement changes
TICK_S = 0.020
LATENCY_CHANGES_PER_S = 5.0  # the latency window's load: 5 updates/s × 20 webhooks = 100 deliveries/s
MAX_TICKS = 1_000_000  # a bound on the loop, far beyond the longest window

PAYLOAD_SQL = (Path(__file__).resolve().parent / "payload.sql").read_text()

# hookql's webhook query for the workload: the fields payload.sql renders for the peers, plus
# `{alias}` so that the 20 queries differ as 20 integrators' would (bench/dataset.py says why).
PEER_QUERY = (
    "query($id: ID!) { node(id: $id) { ... on Invoice { {alias}: __typename id legacyId status"
    " lineItems { quantity status unitPrice { amount currencyCode } variant { sku } }"
    " shipments { carrier trackingNumber status }"
    " amendments { reason amount { amount } }"
    " total { amount currencyCode } } } }"
)

TOGGLE_STATUS_SQL = (
    "UPDATE invoices SET status = CASE WHEN status = 'paid' THEN 'shipped' ELSE 'paid' END WHERE id = ANY($1::bigint[])"
)

# A peer's database is the marketplace without hookql: its capture triggers would make every peer
# pay for hookql's change capture as well as its own enqueue.
PEER_SCHEMA_SQL = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT t.tgname, t.tgrelid::regclass AS tbl FROM pg_trigger t
             WHERE t.tgfoid = 'hookql_capture'::regproc LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tbl);
    END LOOP;
END $$;
CREATE TABLE peer_webhooks (
    id     serial PRIMARY KEY,
    name   text NOT NULL UNIQUE,
    url    text NOT NULL,
    secret text NOT NULL
);
"""


def hookql_webhooks(count: int = PEER_WEBHOOKS) -> list[dataset.WebhookSpec]:
    """The workload's webhooks as hookql registers them: all on invoices, all the operator's."""
    return [dataset.WebhookSpec(f"w{i}", "invoice", None, PEER_QUERY.replace("{alias}", f"w{i}")) for i in range(count)]


async def hookql_setup(conn: asyncpg.Connection, hook_url: object, count: int = PEER_WEBHOOKS) -> dict[str, str]:
    """Register the webhooks with hookql (rows, as bench/dataset.py does); name → signing secret."""
    await dataset.create_webhooks(conn, hookql_webhooks(count), hook_url)  # type: ignore[arg-type]
    rows = await conn.fetch("SELECT name, secret FROM webhooks")
    return {r["name"]: r["secret"] for r in rows}


async def peer_setup(conn: asyncpg.Connection, hook_url: object, count: int = PEER_WEBHOOKS) -> dict[str, str]:
    """The peers' marketplace: hookql's capture gone, the subscriptions in `peer_webhooks`."""
    await conn.execute(PEER_SCHEMA_SQL)
    secrets = {f"w{i}": dataset.new_secret() for i in range(count)}
    await conn.executemany(
        "INSERT INTO peer_webhooks (name, url, secret) VALUES ($1, $2, $3)",
        [(name, hook_url(name), secret) for name, secret in secrets.items()],  # type: ignore[operator]
    )
    return secrets


async def invoice_ids(conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM invoices ORDER BY id")]


@dataclass
class InvoiceRun:
    """What the producer committed: per invoice, the monotonic times of the COMMITs that changed it."""

    commits: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    changes: int = 0
    statements: int = 0
    started_at: float = 0.0
    elapsed_s: float = 0.0

    @property
    def commits_per_s(self) -> float:
        """Changes (invoice updates) per second: what bench.context.describe calls commits."""
        return self.changes / self.elapsed_s if self.elapsed_s else 0.0


class InvoiceProducer:
    """Changes invoice statuses from one connection, cycling through `invoices` from `start`.

    At full load it runs on a shared schedule (statement k starts no earlier than k × 20 ms) and,
    when PostgreSQL is slower than that, as fast as it allows; with `rate_per_s` it changes one
    invoice per 1 / rate seconds instead."""

    def __init__(self, database_url: str, invoices: list[int], start: int = 0) -> None:
        if not invoices:
            raise ValueError("the producer needs invoices to update")
        self.database_url = database_url
        self.invoices = invoices
        self.position = start

    def _next(self, n: int) -> list[int]:
        ids = [self.invoices[(self.position + k) % len(self.invoices)] for k in range(n)]
        self.position += n
        return ids

    async def run(
        self, *, duration_s: float, rate_per_s: float | None = None, stop: asyncio.Event | None = None
    ) -> InvoiceRun:
        stop = stop or asyncio.Event()
        run = InvoiceRun()
        per_statement = 1 if rate_per_s else CHANGES_PER_TICK
        interval_s = 1.0 / rate_per_s if rate_per_s else TICK_S
        conn = await asyncpg.connect(self.database_url)
        try:
            toggle = await conn.prepare(TOGGLE_STATUS_SQL)
            run.started_at = time.monotonic()
            stop_at = run.started_at + duration_s
            for tick in range(MAX_TICKS):
                due = run.started_at + tick * interval_s
                if stop.is_set() or due >= stop_at:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                ids = self._next(per_statement)
                await toggle.fetch(ids)
                committed_at = time.monotonic()
                for invoice_id in ids:
                    run.commits[invoice_id].append(committed_at)
                run.changes += len(ids)
                run.statements += 1
            run.elapsed_s = time.monotonic() - run.started_at
        finally:
            await conn.close()
        return run
