"""How long and how big each measurement is, for a full run (< 5 min) and --quick (< 1½ min).
Every window is bounded in time and every loop in count; the numbers here are those bounds.

--quick is a smoke test that keeps the bench working (CI runs it): same scenarios, windows of
seconds, and fewer webhooks so that an engine cycle fits in them. Its numbers are not the ones
to quote; the full run's are."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool
    # limits
    l1_s: float
    l1_warmup_s: float
    l2_s: float
    l3_samples: int
    l3_max_s: float
    # throughput / latency / scaling
    webhooks: int  # the throughput mix: across the three types, half of them sellers'
    throughput_s: float  # counted window, producer at full speed, per process configuration
    warmup_s: float  # from the first delivery to the window's start (not steady state yet)
    latency_s: float  # counted window at half load
    drain_s: float  # how long after the producer stops we wait for the last deliveries
    scaling_s: float
    scaling_webhooks: tuple[int, ...]
    # coalescing
    burst_updates: int
    unselected_updates: int
    coalesce_debounce_ms: int  # quiet window long enough to hold the whole burst
    # cost growth
    cost_batches: tuple[int, ...]
    cost_timeout_s: float  # per batch
    # memory
    backlog_webhooks: int
    backlog_entities: int  # backlog events = webhooks × entities
    memory_window_s: float
    memory_hold_s: float  # sampling goes on this long after the backlog is complete
    settle_s: float  # after expected deliveries arrived: time for an extra (wrong) one to show up
    # noisy neighbour
    neighbour_window_s: float  # quiet, then the same again under attack
    neighbour_drain_s: float  # after the attack: how long the neighbour's last deliveries may take
    # peers (`--peers`): rounds alternate the systems' order; per system and round, a latency window
    # at 5 updates/s, then a throughput window, each after `warmup_s` from the first delivery
    peers_rounds: int = 3
    peers_latency_s: float = 8.0
    peers_throughput_s: float = 10.0
    # engine settings of the throughput/latency runs
    debounce_ms: int = 50
    targets_per_type: int = 2_000

    @property
    def backlog_events(self) -> int:
        return self.backlog_webhooks * self.backlog_entities

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            l1_s=5.0,
            l1_warmup_s=1.0,
            l2_s=5.0,
            l3_samples=500,
            l3_max_s=10.0,
            webhooks=100,
            throughput_s=17.0,  # + warm-up and time to first delivery: the producer runs > 20 s
            warmup_s=3.0,
            latency_s=12.0,
            drain_s=5.0,
            scaling_s=8.0,
            scaling_webhooks=(10, 100, 1_000),
            burst_updates=1_000,
            unselected_updates=10,
            coalesce_debounce_ms=1_000,
            cost_batches=(1, 10, 100, 1_000),
            cost_timeout_s=60.0,
            backlog_webhooks=100,
            backlog_entities=1_000,
            # Delivery paces evaluation (app.engine.producer): with every receiver refusing, the
            # engine enqueues as fast as it records the failed attempts (~1,600 events/s here), not
            # ahead of them as it once did (100,000 in 16 s), so the backlog takes about a minute.
            memory_window_s=120.0,
            memory_hold_s=3.0,
            settle_s=1.5,
            neighbour_window_s=10.0,
            neighbour_drain_s=5.0,
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            l1_s=1.0,
            l1_warmup_s=0.2,
            l2_s=1.0,
            l3_samples=100,
            l3_max_s=3.0,
            webhooks=6,  # a smoke test: windows of seconds need a short engine cycle
            throughput_s=1.5,  # + warm-up and time to first delivery: the producer runs ~3 s
            warmup_s=0.7,
            latency_s=1.5,
            drain_s=1.5,
            scaling_s=1.5,
            scaling_webhooks=(3, 6, 12),
            burst_updates=1_000,
            unselected_updates=10,
            coalesce_debounce_ms=500,  # the burst takes ~0.3 s; the window is quiet time, not length
            cost_batches=(1, 10, 100, 1_000),
            cost_timeout_s=15.0,
            backlog_webhooks=10,
            backlog_entities=1_000,
            memory_window_s=12.0,
            memory_hold_s=1.0,
            settle_s=0.8,
            neighbour_window_s=1.5,
            neighbour_drain_s=1.0,
            peers_rounds=1,
            peers_latency_s=1.5,
            peers_throughput_s=1.5,
        )
