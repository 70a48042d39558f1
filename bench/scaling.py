"""Cost growth with the number of webhooks: sustained deliveries/s of one `serve` with 10, 100
and 1,000 webhooks (same mix and queries as the throughput run). Flat means the per-delivery
cost does not grow with how many webhooks exist."""

from __future__ import annotations

from typing import Any

from bench import dataset
from bench.context import Bench, describe, sustained
from bench.report import Figure

# "Roughly flat": the slowest configuration delivers at least this share of the fastest.
GOAL_FLATNESS = 0.67


def declare(bench: Bench) -> list[Figure]:
    counts = bench.plan.scaling_webhooks
    figures = [
        Figure(
            f"scaling.webhooks_{n}_deliveries_per_s",
            f"deliveries/s, {n:,} webhooks",
            "deliveries/s",
            "info",
            goal="(flatness carries the goal)",
        )
        for n in counts
    ]
    figures.append(
        Figure(
            "scaling.flatness",
            f"slowest ÷ fastest, {counts[0]:,}–{counts[-1]:,} webhooks",
            "ratio",
            ">=",
            threshold=GOAL_FLATNESS,
            goal=f"≥ {GOAL_FLATNESS} (roughly flat)",
        )
    )
    return figures


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    rates: dict[int, float] = {}
    details: dict[str, Any] = {}
    bench.details["scaling"] = details
    for n in plan.scaling_webhooks:
        if n == plan.webhooks and bench.serve_run is not None:
            # The throughput run was this very configuration (same mix, one serve): not run twice.
            run = {**bench.serve_run, "from": "throughput run"}
        else:
            specs = dataset.plan_webhooks(n, bench.sellers)
            run = await sustained(bench, ["serve"], specs, f"scaling-{n}", plan.scaling_s)
        details[str(n)] = run
        rates[n] = run["deliveries_per_s"]
        fig = figures[f"scaling.webhooks_{n}_deliveries_per_s"]
        fig.value = run["deliveries_per_s"]
        fig.note = describe(run)
    if rates and max(rates.values()) > 0:
        flat = figures["scaling.flatness"]
        flat.value = round(min(rates.values()) / max(rates.values()), 3)
        flat.note = ", ".join(f"{n:,}: {r:,.0f}/s" for n, r in rates.items())
