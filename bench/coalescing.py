"""Coalescing: 1,000 committed updates to one variant inside the debounce window → exactly one
delivery per webhook that may see it, carrying the final state; then updates of a column no
query selects → no delivery at all (skipped as identical)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench import dataset
from bench.context import SAMPLE_EVERY_S, Bench, wait_quiet
from bench.processes import EngineSettings
from bench.report import Figure

MAX_DELAY_MS = 60_000  # far above the burst, so only the quiet window decides
ARRIVAL_MAX_S = 20.0


def declare(bench: Bench) -> list[Figure]:
    return [
        Figure(
            "coalescing.burst_deliveries_per_webhook",
            f"deliveries per webhook, {bench.plan.burst_updates:,}-update burst",
            "deliveries",
            "==",
            threshold=1,
            goal="exactly 1 (final state)",
        ),
        Figure(
            "coalescing.burst_final_state",
            "share of those deliveries carrying the final state",
            "ratio",
            "==",
            threshold=1,
            goal="1 (never stale)",
        ),
        Figure(
            "coalescing.unselected_column_deliveries",
            "deliveries, unselected column updates",
            "deliveries",
            "==",
            threshold=0,
            goal="0",
        ),
    ]


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    settings = EngineSettings(debounce_ms=plan.coalesce_debounce_ms, max_delay_ms=MAX_DELAY_MS)
    specs = dataset.plan_webhooks(plan.webhooks, bench.sellers)
    async with (
        bench.scenario_db("coalescing", specs) as (url, targets),
        bench.engines(["serve"], url, settings, "coalescing"),
    ):
        target = next(t for t in targets if t.entity_type == "variant")
        hearing = {s.name for s in specs if s.entity_type == "variant" and s.seller_id in (None, target.seller_id)}
        await bench.receiver.reset()
        conn = await asyncpg.connect(url)
        try:
            update = await conn.prepare("UPDATE variants SET barcode = $1 WHERE id = $2")
            started = time.monotonic()
            for n in range(1, plan.burst_updates + 1):
                await update.fetch(f"bench-{n}", target.row_id)  # each its own transaction
            burst_s = time.monotonic() - started

            deadline = time.monotonic() + plan.coalesce_debounce_ms / 1000 + ARRIVAL_MAX_S
            while time.monotonic() < deadline:
                by_name = (await bench.receiver.stats())["by_name"]
                if hearing <= by_name.keys():
                    break
                await asyncio.sleep(SAMPLE_EVERY_S)
            await asyncio.sleep(plan.settle_s)
            stats = await bench.receiver.stats()
            last_markers = (await bench.receiver.receipts())["last_marker_by_name"]

            await bench.receiver.reset()
            flip = await conn.prepare("UPDATE variants SET infinite_quantity = NOT infinite_quantity WHERE id = $1")
            for _ in range(plan.unselected_updates):
                await flip.fetch(target.row_id)
            await asyncio.sleep(plan.coalesce_debounce_ms / 1000)
            unselected = await wait_quiet(bench, quiet_s=plan.settle_s, max_s=ARRIVAL_MAX_S)
        finally:
            await conn.close()

    counts = {name: stats["by_name"].get(name, 0) for name in hearing}
    strangers = sum(n for name, n in stats["by_name"].items() if name not in hearing)
    worst = min(counts.values()) if min(counts.values()) < 1 else max(counts.values())
    if strangers:
        worst = max(worst, 1 + strangers)  # a webhook that must not hear it did: not "exactly 1"
    fig = figures["coalescing.burst_deliveries_per_webhook"]
    fig.value = worst
    fig.note = (
        f"{len(hearing)} webhooks may see the variant: min {min(counts.values())}, "
        f"max {max(counts.values())}, {strangers} to others; "
        f"burst took {burst_s:.2f} s (debounce {plan.coalesce_debounce_ms} ms)"
    )
    final = figures["coalescing.burst_final_state"]
    final.value = round(sum(last_markers.get(n) == plan.burst_updates for n in hearing) / len(hearing), 3)
    final.note = f"last body each webhook got carries bench-{plan.burst_updates}"
    figures["coalescing.unselected_column_deliveries"].value = unselected
    figures[
        "coalescing.unselected_column_deliveries"
    ].note = f"{plan.unselected_updates} updates of variants.infinite_quantity, which no query selects"
    bench.details["coalescing"] = {
        "burst_updates": plan.burst_updates,
        "burst_s": round(burst_s, 3),
        "debounce_ms": plan.coalesce_debounce_ms,
        "deliveries_by_webhook": counts,
        "deliveries_to_webhooks_that_may_not_see_it": strangers,
        "last_marker_by_webhook": {n: last_markers.get(n) for n in hearing},
        "unselected_updates": plan.unselected_updates,
        "unselected_deliveries": unselected,
    }
