"""`python -m bench --quick` keeps working: it finishes within a minute and reports every figure
as a number next to the limit or goal it is judged by. The numbers themselves are not asserted
(they depend on the machine); the bench's own table says whether goals hold."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from tests.support.bench_runs import run_in_own_group

pytestmark = pytest.mark.bench

# Issue #5 set a minute for the quick bench and the noisy-neighbour scenario (issue #11) adds ~10 s:
# about 60 s alone. The suite's other xdist workers share the 2 cores with it: twice that, with room.
QUICK_BOUND_S = 180
LIMITS = {"limits.l1_posts_per_s", "limits.l2_commits_per_s", "limits.l3_p50_ms", "limits.l3_p99_ms"}


def test_quick_bench_measures_every_figure_against_its_reference(tmp_path: Path) -> None:
    # given a results path outside the repository
    out = tmp_path / "latest.json"

    # when the quick bench runs as a user would run it
    completed = run_in_own_group([sys.executable, "-m", "bench", "--quick", "--out", str(out)], QUICK_BOUND_S)

    # then it succeeded and wrote every figure with a number and what it is compared with
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(out.read_text())
    figures = {f["key"]: f for f in report["figures"]}
    assert figures.keys() >= LIMITS
    for key, f in figures.items():
        assert isinstance(f["value"], int | float) and math.isfinite(f["value"]), (key, f["reason"])
        assert f["unit"] and f["goal"], key
        if f["comparison"] in ("limit", "info"):
            continue
        assert isinstance(f["threshold"], int | float), key
        assert f["verdict"] in ("pass", "fail"), key
    # and the table a reader sees names each figure
    for f in figures.values():
        assert f["label"] in completed.stdout
