"""The producer: single-row UPDATE+COMMITs of distinct entities, round-robin over the three webhook
types, each writing a fresh marker `bench-<n>` into a column the bench's webhook queries select.
It records `time.monotonic()` right after each COMMIT returns, keyed by the marker, so the
receiver's receipt time of a body carrying that marker gives commit→receipt latency."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import asyncpg

# Enough lanes to keep PostgreSQL busy on a small machine; more only add lock and CPU contention.
PRODUCER_CONNECTIONS = 4
MAX_COMMITS = 2_000_000  # a bound on the loop, beyond any machine's commits in the longest window

# Which row a change of each entity type is written to, and the column the marker goes in.
# An invoice changes through its shipment (an owned row: SPEC §5.1), as marketplaces mostly do.
UPDATE_SQL = {
    "variant": "UPDATE variants SET barcode = $1 WHERE id = $2",
    "invoice": "UPDATE shipments SET tracking_number = $1 WHERE id = $2",
    "refund_request": "UPDATE refund_requests SET reason = $1 WHERE id = $2",
}


@dataclass(frozen=True)
class Target:
    entity_type: str  # the webhook entity type that hears the change
    row_id: int  # the row the UPDATE writes (a shipment for an invoice)
    entity_id: int
    seller_id: int  # the entity's owner: which sellers' webhooks hear about it
    # other webhook entities the same UPDATE changes: a refund request's invoice (it owns it)
    also: tuple[tuple[str, int], ...] = ()

    @property
    def changes(self) -> tuple[tuple[str, int], ...]:
        """Every (webhook entity type, id) whose state this commit changes."""
        return ((self.entity_type, self.entity_id), *self.also)


@dataclass
class ProducerRun:
    commits: dict[int, float] = field(default_factory=dict)  # marker → monotonic time after COMMIT
    targets: dict[int, Target] = field(default_factory=dict)  # marker → what it changed
    started_at: float = 0.0
    elapsed_s: float = 0.0

    @property
    def count(self) -> int:
        return len(self.commits)

    @property
    def commits_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s else 0.0


async def load_targets(conn: asyncpg.Connection, per_type: int) -> list[Target]:
    """Up to `per_type` entities of each type, interleaved v, i, r, v, i, r …"""
    variants = await conn.fetch(
        "SELECT v.id, p.seller_id FROM variants v JOIN products p ON p.id = v.product_id ORDER BY v.id LIMIT $1",
        per_type,
    )
    invoices = await conn.fetch(
        "SELECT DISTINCT ON (s.invoice_id) s.id, s.invoice_id, i.seller_id"
        " FROM shipments s JOIN invoices i ON i.id = s.invoice_id ORDER BY s.invoice_id, s.id LIMIT $1",
        per_type,
    )
    refunds = await conn.fetch(
        "SELECT r.id, r.invoice_id, i.seller_id FROM refund_requests r JOIN invoices i ON i.id = r.invoice_id"
        " ORDER BY r.id LIMIT $1",
        per_type,
    )
    lanes = [
        [Target("variant", r["id"], r["id"], r["seller_id"]) for r in variants],
        [Target("invoice", r["id"], r["invoice_id"], r["seller_id"]) for r in invoices],
        [Target("refund_request", r["id"], r["id"], r["seller_id"], (("invoice", r["invoice_id"]),)) for r in refunds],
    ]
    return [t for group in itertools.zip_longest(*lanes) for t in group if t is not None]


class Producer:
    def __init__(self, database_url: str, targets: list[Target]) -> None:
        if not targets:
            raise ValueError("the producer needs entities to update")
        self.database_url = database_url
        self.targets = targets
        self._markers = itertools.count(1)
        self._next_target = itertools.cycle(targets)

    async def run(
        self, *, duration_s: float, rate_per_s: float | None = None, stop: asyncio.Event | None = None
    ) -> ProducerRun:
        """Commit as fast as PostgreSQL allows (or at `rate_per_s`) for at most `duration_s`,
        or until `stop` is set."""
        stop = stop or asyncio.Event()
        run = ProducerRun()
        conns = [await asyncpg.connect(self.database_url) for _ in range(PRODUCER_CONNECTIONS)]
        slots = itertools.count()
        try:
            statements = [{kind: await c.prepare(sql) for kind, sql in UPDATE_SQL.items()} for c in conns]
            run.started_at = time.monotonic()
            stop_at = run.started_at + duration_s

            async def lane(prepared: dict[str, asyncpg.prepared_stmt.PreparedStatement]) -> None:
                while len(run.commits) < MAX_COMMITS and not stop.is_set():
                    if rate_per_s:
                        # A shared schedule: commit k starts no earlier than start + k / rate.
                        due = run.started_at + next(slots) / rate_per_s
                        if due >= stop_at:
                            return
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                    elif time.monotonic() >= stop_at:
                        return
                    marker = next(self._markers)
                    target = next(self._next_target)
                    await prepared[target.entity_type].fetch(f"bench-{marker}", target.row_id)
                    run.commits[marker] = time.monotonic()
                    run.targets[marker] = target

            await asyncio.gather(*(lane(s) for s in statements))
            run.elapsed_s = time.monotonic() - run.started_at
        finally:
            for conn in conns:
                await conn.close()
        return run
