"""The 24-hour delivery chart's geometry and text (app.web.charts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.store.dashboard import HourBucket
from app.web.charts import PLOT_H, TOP, delivery_chart

START = datetime(2026, 12, 1, 0, tzinfo=UTC)


def hours(*figures: tuple[int, int, float | None]) -> list[HourBucket]:
    filled = list(figures) + [(0, 0, None)] * (24 - len(figures))
    return [HourBucket(START + timedelta(hours=i), ok, failed, p50) for i, (ok, failed, p50) in enumerate(filled)]


def test_an_empty_day_has_flat_bars_and_says_so() -> None:
    chart = delivery_chart(hours())
    assert len(chart.bars) == 24 and all(b.ok_h == 0 and b.failed_h == 0 for b in chart.bars)
    assert chart.latency_dots == () and chart.latency_lines == ()
    assert chart.summary == "In the last 24 hours: 0 attempts, 0 answered 2xx, 0 failed."
    assert [t.text for t in chart.count_ticks] == ["0", "1"]  # no half-attempt tick


def test_bars_stack_failures_on_successes_against_a_round_maximum() -> None:
    chart = delivery_chart(hours((6, 2, 120.0), (1, 0, 80.0)))
    first = chart.bars[0]
    bottom = TOP + PLOT_H
    assert chart.count_ticks[-1].text == "10"  # 8 rounds up to 10
    assert first.ok_h == round(PLOT_H * 0.6, 1) and first.failed_h == round(PLOT_H * 0.2, 1)
    assert first.ok_y == round(bottom - first.ok_h, 1) and first.failed_y == round(first.ok_y - first.failed_h, 1)
    assert first.label == "00:00–01:00 UTC: 6 answered 2xx, 2 failed, median 120 ms"
    assert chart.summary.endswith("Median latency per hour between 80 ms and 120 ms.")
    assert chart.rows[0].p50_ms == 120 and chart.rows[2].p50_ms is None


def test_latency_lines_break_over_hours_without_attempts() -> None:
    chart = delivery_chart(hours((1, 0, 10.0), (1, 0, 20.0), (0, 0, None), (0, 1, 30_000.0), (1, 0, 5.0)))
    assert len(chart.latency_dots) == 4
    assert len(chart.latency_lines) == 2  # hours 0-1, then 3-4
    assert chart.latency_ticks[-1].text == "50.0 s"
    assert [label.text for label in chart.hour_labels] == ["00:00", "06:00", "12:00", "18:00", "23:00"]
