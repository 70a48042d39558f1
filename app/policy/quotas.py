"""Per-key request quotas: a rate (token bucket) and a number running at once. Pure: the caller
passes `now` (seconds, monotonic) in and asks before each request.

The accounting lives in one serve process's memory: keys are not coordinated across processes,
so N `serve` processes behind a balancer let one key make up to N times the rate and the
concurrency. Requests are spread over processes by connection, so that is a bound, not a
surprise; a shared count would put a database round trip before every request."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Refusal:
    """Why a request may not run now, and when to try again (the `Retry-After` header)."""

    message: str
    retry_after_s: int  # whole seconds, at least 1


@dataclass
class _Account:
    tokens: float  # requests the key may start now (fractions refill continuously)
    updated: float  # when `tokens` was last brought up to date
    running: int = 0


class KeyQuotas(Generic[K]):
    """`requests_per_s` per key, in bursts of up to twice that, and at most `max_running` of one
    key's requests at once. A key's account is forgotten once it is idle and its bucket full (it
    is then the same as a new one), so the map holds only keys active in the last few seconds."""

    def __init__(self, requests_per_s: int, max_running: int) -> None:
        self.rate = float(requests_per_s)
        self.burst = 2.0 * requests_per_s
        self.max_running = max_running
        self.refill_s = self.burst / self.rate  # an empty bucket is full again after this long
        self._accounts: dict[K, _Account] = {}
        self._swept = -math.inf

    def admit(self, key: K, now: float) -> Refusal | None:
        """Count one request of `key` as started and return None, or say why it may not start
        (it is then not counted). Every admitted request must be `release`d."""
        self._sweep(now)
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _Account(tokens=self.burst, updated=now)
        account.tokens = min(self.burst, account.tokens + (now - account.updated) * self.rate)
        account.updated = now
        if account.running >= self.max_running:
            return Refusal(
                f"this API key already has {account.running} requests running, its limit "
                "(key_max_concurrent_requests); wait for one to finish",
                retry_after_s=1,
            )
        if account.tokens < 1.0:
            wait_s = (1.0 - account.tokens) / self.rate
            return Refusal(
                f"this API key is over its rate of {self.rate:g} requests per second "
                f"(key_requests_per_s, bursts of {self.burst:g})",
                retry_after_s=max(1, math.ceil(wait_s)),
            )
        account.tokens -= 1.0
        account.running += 1
        return None

    def release(self, key: K) -> None:
        """One admitted request of `key` has finished."""
        account = self._accounts.get(key)
        if account is not None and account.running > 0:
            account.running -= 1

    def __len__(self) -> int:
        """Keys with an account: the memory this holds."""
        return len(self._accounts)

    def _sweep(self, now: float) -> None:
        # At most once per refill period, so the work stays proportional to the requests made.
        if now - self._swept < self.refill_s:
            return
        self._swept = now
        idle = [
            key
            for key, account in self._accounts.items()
            if account.running == 0 and account.tokens + (now - account.updated) * self.rate >= self.burst
        ]
        for key in idle:
            del self._accounts[key]
