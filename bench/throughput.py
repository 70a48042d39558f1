"""Throughput: the producer updates distinct entities as fast as PostgreSQL allows while 100
webhooks with realistic nested queries listen; sustained deliveries/s of one `serve`, then of
`serve` + one `worker`, each against L1."""

from __future__ import annotations

from typing import Any

from bench import dataset
from bench.context import Bench, describe, sustained
from bench.report import Figure

GOAL_RATIO_L1 = 0.6  # issue #5: one process delivers at ≥ 0.6 × L1


def declare(bench: Bench) -> list[Figure]:
    l1 = bench.l1_posts_per_s
    return [
        Figure(
            "throughput.serve_deliveries_per_s",
            "deliveries/s, one serve",
            "deliveries/s",
            ">=",
            threshold=GOAL_RATIO_L1 * l1 if l1 else None,
            goal=f"≥ {GOAL_RATIO_L1} × L1" + (f" = {GOAL_RATIO_L1 * l1:,.0f}" if l1 else ""),
        ),
        Figure(
            "throughput.serve_ratio_l1",
            "deliveries/s ÷ L1, one serve",
            "ratio",
            ">=",
            threshold=GOAL_RATIO_L1,
            goal=f"≥ {GOAL_RATIO_L1}",
        ),
        Figure(
            "throughput.serve_worker_deliveries_per_s",
            "deliveries/s, serve + worker",
            "deliveries/s",
            "info",
            goal="(no goal; shows scale-out)",
        ),
        Figure(
            "throughput.serve_worker_ratio_l1",
            "deliveries/s ÷ L1, serve + worker",
            "ratio",
            "info",
            goal="(no goal; shows scale-out)",
        ),
    ]


async def measure(bench: Bench, figures: dict[str, Figure]) -> None:
    plan = bench.plan
    specs = dataset.plan_webhooks(plan.webhooks, bench.sellers)
    details: dict[str, Any] = {"webhooks": plan.webhooks}
    bench.details["throughput"] = details
    for label, commands, prefix in (
        ("serve", ["serve"], "throughput.serve"),
        ("serve+worker", ["serve", "worker"], "throughput.serve_worker"),
    ):
        run = await sustained(bench, commands, specs, f"throughput-{label}", plan.throughput_s)
        details[label] = run
        rate = run["deliveries_per_s"]
        figures[f"{prefix}_deliveries_per_s"].value = rate
        figures[f"{prefix}_deliveries_per_s"].note = describe(run)
        if bench.l1_posts_per_s:
            figures[f"{prefix}_ratio_l1"].value = round(rate / bench.l1_posts_per_s, 3)
        else:
            figures[f"{prefix}_ratio_l1"].reason = "L1 not measured"
        if label == "serve":
            bench.peak_deliveries_per_s = rate
            bench.serve_run = run
