"""Plain-text tables and key/value blocks for a terminal: columns padded to their widest cell,
no colours, nothing a pipe into `grep` or `awk` would trip on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

MAX_CELL_CHARS = 60  # longer cells (URLs, reasons) are cut with "…"; --json has them whole


def cell(value: object) -> str:
    """A value as a table shows it: `-` for nothing, times to the second, rates as percentages."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def when(value: str | None) -> str:
    """An ISO timestamp from the API → `2026-12-02 01:40:07` (UTC), or `-`."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`name: value` lines, the names aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name + ':':<{width + 1}} {cell(value) if value is not None else '-'}" for name, value in pairs)
