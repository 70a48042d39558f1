"""Figures, their goals and verdicts; the stdout table and the JSON file.

A figure is one number the bench measured (or could not measure, with the reason), its unit,
and what it is compared with: a machine limit it is a ratio of, or a goal from the issue.
Limits themselves (L1–L3) have no goal: they are the denominators; "info" figures show a curve
(e.g. statements per event at small batches) whose goal is stated on a neighbouring figure."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

# "limit": a machine limit (a denominator); "info": measured and shown, no goal attached.
TABLE_REASON_CHARS = 120  # the JSON keeps the whole reason

Comparison = Literal[">=", "<=", "==", "limit", "info"]
Verdict = Literal["pass", "fail", "limit", "info", "not measured"]


@dataclass
class Figure:
    key: str  # stable dotted name, e.g. "throughput.serve_ratio_l1"
    label: str  # what a reader sees in the table
    unit: str
    comparison: Comparison
    threshold: float | None = None  # the number `value` must satisfy `comparison` against
    goal: str = ""  # the goal in words, e.g. "≥ 0.6 × L1"
    value: float | None = None
    reason: str = ""  # why `value` is None
    note: str = ""  # context a reader needs (sample size, method …)

    @property
    def verdict(self) -> Verdict:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "not measured"
        if self.comparison in ("limit", "info"):
            return self.comparison
        if self.threshold is None:  # its reference (e.g. L1) could not be measured
            return "not measured"
        ok = {
            ">=": self.value >= self.threshold,
            "<=": self.value <= self.threshold,
            "==": self.value == self.threshold,
        }[self.comparison]
        return "pass" if ok else "fail"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        return data


def not_measured(figures: list[Figure], reason: str) -> list[Figure]:
    """The same figures, honestly empty: no value, and why."""
    for f in figures:
        f.value = None
        f.reason = reason
    return figures


@dataclass
class Report:
    mode: str  # "full" or "quick"
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # per-scenario raw numbers and settings
    machine: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def add(self, figures: list[Figure]) -> None:
        self.figures.extend(figures)

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "duration_s": round(self.duration_s, 1),
            "machine": self.machine,
            "figures": [f.as_json() for f in self.figures],
            "details": self.details,
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")

    def table(self) -> str:
        rows = [("figure", "value", "unit", "goal", "verdict")]
        for f in self.figures:
            value = format_number(f.value) if f.value is not None else "—"
            reason = f.reason if len(f.reason) <= TABLE_REASON_CHARS else f.reason[: TABLE_REASON_CHARS - 1] + "…"
            verdict = f.verdict if f.value is not None else f"not measured: {reason}"
            rows.append((f.label, value, f.unit, f.goal, verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for i, r in enumerate(rows):
            cells = [r[c].ljust(widths[c]) if c != 1 else r[c].rjust(widths[c]) for c in range(4)]
            lines.append("  ".join([*cells, r[4]]).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in [*widths, 7]))
        return "\n".join(lines)


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def machine_info(postgres_version: str) -> dict[str, Any]:
    """Where the numbers came from: they mean little without the machine."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gb: float | None = round(psutil.virtual_memory().total / 2**30, 1)
        load = [round(x, 2) for x in psutil.getloadavg()]
    except Exception:  # psutil is optional here: the figures do not depend on it
        memory_gb, load = None, []
    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "load_average_at_start": load,
        "python": sys.version.split()[0],
        "postgres": postgres_version,
    }
