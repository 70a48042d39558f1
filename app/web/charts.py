"""A webhook's last 24 hours as a chart: attempts per hour (answered 2xx, stacked under those
that were not) and the median latency per hour as a line. Pure: the geometry of an inline SVG
that `dashboard_macros.html` renders on the server (no JavaScript, nothing fetched), with a text
summary for its `<desc>` and the figures for a table beside it."""

from __future__ import annotations

from dataclasses import dataclass

from app.store.dashboard import HourBucket

WIDTH = 720
HEIGHT = 200
LEFT = 44  # room for the attempts axis
RIGHT = 56  # room for the latency axis
TOP = 12
BOTTOM = 24  # room for the hour labels
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM
BAR_GAP = 2


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_h: float
    failed_y: float
    failed_h: float
    label: str  # "14:00–15:00 UTC: 12 answered 2xx, 1 failed, median 87 ms"


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class HourLabel:
    x: float
    text: str


@dataclass(frozen=True)
class Row:
    hour: str  # "14:00"
    ok: int
    failed: int
    p50_ms: int | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot: tuple[float, float, float, float]  # x, y, width, height
    bars: tuple[Bar, ...]
    latency_lines: tuple[str, ...]  # polyline `points`, one per run of hours with attempts
    latency_dots: tuple[tuple[float, float], ...]
    count_ticks: tuple[Tick, ...]
    latency_ticks: tuple[Tick, ...]
    hour_labels: tuple[HourLabel, ...]
    summary: str
    rows: tuple[Row, ...]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^n at or above `value` (1 for nothing): round axis maxima."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.0f} ms"


def delivery_chart(buckets: list[HourBucket]) -> Chart:
    """The chart of `buckets` (oldest first, as `store.dashboard.hourly_deliveries` returns them)."""
    count_max = _nice_ceiling(max((b.ok + b.failed for b in buckets), default=0))
    latencies = [b.p50_ms for b in buckets if b.p50_ms is not None]
    latency_max = _nice_ceiling(max(latencies, default=0))
    slot = PLOT_W / max(1, len(buckets))
    bottom = TOP + PLOT_H

    bars: list[Bar] = []
    runs: list[list[tuple[float, float]]] = []
    dots: list[tuple[float, float]] = []
    labels: list[HourLabel] = []
    rows: list[Row] = []
    previous_had_latency = False
    for i, b in enumerate(buckets):
        x = LEFT + i * slot
        ok_h = PLOT_H * b.ok / count_max
        failed_h = PLOT_H * b.failed / count_max
        start = b.hour.strftime("%H:00")
        end = f"{(b.hour.hour + 1) % 24:02d}:00"
        median = f", median {_ms(b.p50_ms)}" if b.p50_ms is not None else ""
        bars.append(
            Bar(
                x=round(x + BAR_GAP / 2, 1),
                width=round(slot - BAR_GAP, 1),
                ok_y=round(bottom - ok_h, 1),
                ok_h=round(ok_h, 1),
                failed_y=round(bottom - ok_h - failed_h, 1),
                failed_h=round(failed_h, 1),
                label=f"{start}–{end} UTC: {b.ok} answered 2xx, {b.failed} failed{median}",
            )
        )
        if b.p50_ms is not None:
            point = (round(x + slot / 2, 1), round(bottom - PLOT_H * b.p50_ms / latency_max, 1))
            dots.append(point)
            if not previous_had_latency:
                runs.append([])
            runs[-1].append(point)
        previous_had_latency = b.p50_ms is not None
        if i % 6 == 0 or i == len(buckets) - 1:
            labels.append(HourLabel(round(x + slot / 2, 1), start))
        rows.append(Row(start, b.ok, b.failed, None if b.p50_ms is None else round(b.p50_ms)))

    ok_total = sum(b.ok for b in buckets)
    failed_total = sum(b.failed for b in buckets)
    summary = (
        f"In the last 24 hours: {ok_total + failed_total} attempts, {ok_total} answered 2xx, {failed_total} failed."
    )
    if latencies:
        summary += f" Median latency per hour between {_ms(min(latencies))} and {_ms(max(latencies))}."
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        plot=(LEFT, TOP, PLOT_W, PLOT_H),
        bars=tuple(bars),
        latency_lines=tuple(" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1),
        latency_dots=tuple(dots),
        count_ticks=tuple(
            Tick(round(bottom - PLOT_H * f, 1), f"{count_max * f:g}")
            for f in (0, 0.5, 1)
            if float(count_max * f).is_integer()  # no "0.5 attempts" tick
        ),
        latency_ticks=tuple(Tick(round(bottom - PLOT_H * f, 1), _ms(latency_max * f)) for f in (0.5, 1)),
        hour_labels=tuple(labels),
        summary=summary,
        rows=tuple(rows),
    )
