"""Where the machine's CPU goes during a counted window: cores used by the engine processes,
PostgreSQL (the bench server and its backends), the receiver and this process (the producer).

Throughput on a small machine is a matter of shares: L1 is measured with the machine otherwise
idle, while during a throughput window the engine shares it with all of these. The figures make
that visible next to the rates."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import psutil


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system
    return total


def _with_descendants(pids: list[int]) -> list[int]:
    found = list(pids)
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.extend(c.pid for c in psutil.Process(pid).children(recursive=True))
    return found


@dataclass
class CpuShares:
    """`start()` and `stop()` around a window; `cores()` is CPU-seconds per second per group."""

    groups: dict[str, list[int]]  # name → pids (PostgreSQL: the postmaster, children found live)
    postmaster_pid: int | None = None
    _started: dict[str, float] = field(default_factory=dict)
    _at: float = 0.0
    _machine: float = 0.0
    result: dict[str, float] = field(default_factory=dict)

    def _pids(self) -> dict[str, list[int]]:
        # Each group's processes with their descendants found live: serve's engine child
        # (app.engine.supervisor) is the engine's CPU too, even after a restart.
        pids = {name: _with_descendants(p) for name, p in self.groups.items()}
        pids["bench (producer)"] = [os.getpid()]
        if self.postmaster_pid is not None:
            try:
                master = psutil.Process(self.postmaster_pid)
                pids["postgresql"] = [master.pid, *(c.pid for c in master.children())]
            except psutil.Error:
                pids["postgresql"] = []
        return pids

    def _sample(self) -> dict[str, float]:
        return {name: _cpu_s(p) for name, p in self._pids().items()}

    def start(self) -> None:
        self._started, self._at = self._sample(), time.monotonic()
        self._machine = _machine_busy_s()

    def stop(self) -> dict[str, float]:
        ended, elapsed = self._sample(), time.monotonic() - self._at
        # Backends that exited during the window took their CPU time with them: a lower bound.
        self.result = {
            name: round(max(0.0, ended[name] - self._started.get(name, ended[name])) / elapsed, 2) for name in ended
        }
        self.result["machine (all processes)"] = round((_machine_busy_s() - self._machine) / elapsed, 2)
        self.result["cores"] = float(psutil.cpu_count() or 0)
        return self.result


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))
