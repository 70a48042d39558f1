"""Small statistics over samples, without numpy."""

from __future__ import annotations

import math


def percentile(samples: list[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
