"""Per-key quotas on the API: a request rate (a token bucket), a number of requests running at once,
and a budget of query-cost points (a leaky bucket, as Shopify's GraphQL Admin API meters its
keys). Pure: the caller passes `now` (seconds, monotonic) in.

A request meets them in this order (app.api.asgi, app.api.cost_limit):

1. `refuse_early`, before the key is looked up in the database: a key this process already knows
   to be over a quota is refused at once, its body unread. A client that ignores `Retry-After`
   and keeps sending then costs the event loop the least a request can cost (read its head,
   answer 429), and takes no database connection from anyone.
2. `admit`, once the key is authenticated: the rate and the requests running.
3. `charge`, once the document is parsed and measured: its requested cost (the static estimate of
   app.evaluation.cost, an upper bound) comes out of the key's bucket before the document runs.
   A bucket holding less throttles the key until it holds enough.
4. `refund`, after the document ran: what it did not return (requested − actual) flows back.

Points stand for event-loop time: executing and encoding one returned object or value costs the
API's loop about 15-30 µs (measured on a 2-core VM), so a bucket restoring 1,000 points a second
lets one key hold the loop about 2-3 % of the time, whatever it sends and however many clients.

The accounting lives in one serve process's memory: keys are not coordinated across processes,
so N `serve` processes behind a balancer let one key make up to N times the rate, the
concurrency and the cost. Requests are spread over processes by connection, so that is a bound,
not a surprise; a shared count would put a database round trip before every request."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.config import Settings

K = TypeVar("K", bound=Hashable)

RATE_LIMITED = "RATE_LIMITED"  # `extensions.code` of a refusal for the request rate or the requests running
THROTTLED = "THROTTLED"  # … for the cost budget (Shopify's code)


@dataclass(frozen=True)
class Refusal:
    """Why a request may not run now, and when to try again (the `Retry-After` header)."""

    message: str
    retry_after_s: int  # whole seconds, at least 1
    code: str = RATE_LIMITED


@dataclass(frozen=True)
class CostBucket:
    """A key's budget of query-cost points: it holds at most `capacity` and refills at
    `restore_per_s`. `capacity` is at least the key's cost limit, so every document that passes
    the limit can run once the bucket is full."""

    capacity: int  # points
    restore_per_s: int  # points per second
    kind: str = "seller"  # "seller" or "operator": named in refusals, with the settings to change


def cost_bucket_for(settings: Settings, *, operator: bool) -> CostBucket:
    """The cost bucket of an operator key, else a seller key's."""
    if operator:
        return CostBucket(settings.operator_cost_bucket, settings.operator_cost_restore_per_s, "operator")
    return CostBucket(settings.seller_cost_bucket, settings.seller_cost_restore_per_s, "seller")


@dataclass(frozen=True)
class ThrottleStatus:
    """A key's bucket as `extensions.cost.throttleStatus` reports it (Shopify's names)."""

    maximum_available: int
    currently_available: int
    restore_rate: int

    def as_dict(self) -> dict[str, int]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": self.currently_available,
            "restoreRate": self.restore_rate,
        }


@dataclass
class _Account:
    bucket: CostBucket
    tokens: float  # requests the key may start now (fractions refill continuously)
    points: float  # cost points in the key's bucket
    updated: float  # when `tokens` and `points` were last brought up to date
    running: int = 0
    throttled_cost: int = 0  # the cost of the key's last throttled document; 0 once one was charged


class KeyQuotas(Generic[K]):
    """`requests_per_s` per key, in bursts of up to twice that; at most `max_running` of one
    key's requests at once; and each key's cost bucket. A key's account is forgotten once it is
    idle with both buckets full (it is then the same as a new one), so the map holds only keys
    active in the last few seconds."""

    def __init__(self, requests_per_s: int, max_running: int) -> None:
        self.rate = float(requests_per_s)
        self.burst = 2.0 * requests_per_s
        self.max_running = max_running
        self.refill_s = self.burst / self.rate  # an empty request bucket is full again after this long
        self._accounts: dict[K, _Account] = {}
        self._swept = -math.inf

    def refuse_early(self, key: K, now: float) -> Refusal | None:
        """Before `key` is authenticated: why a known key may not start a request now, or None.
        Changes nothing, and says None for a key without an account (unknown keys never get one:
        accounts are opened by `admit` and `charge`, after authentication)."""
        account = self._accounts.get(key)
        if account is None:
            return None
        self._refill(account, now)
        return self._over_rate_or_running(account) or self._still_throttled(account)

    def admit(self, key: K, now: float, bucket: CostBucket) -> Refusal | None:
        """Count one request of `key` as started and return None, or say why it may not start
        (it is then not counted). Every admitted request must be `release`d."""
        account = self._account(key, now, bucket)
        refusal = self._over_rate_or_running(account) or self._still_throttled(account)
        if refusal is not None:
            return refusal
        account.tokens -= 1.0
        account.running += 1
        return None

    def release(self, key: K) -> None:
        """One admitted request of `key` has finished."""
        account = self._accounts.get(key)
        if account is not None and account.running > 0:
            account.running -= 1

    def charge(self, key: K, cost: int, now: float, bucket: CostBucket) -> Refusal | None:
        """Take a document's requested `cost` from the key's bucket and return None, or throttle
        the key: nothing is taken, and until the bucket holds `cost` again the key's requests are
        refused early. A cost above the bucket's capacity is charged as a full bucket."""
        account = self._account(key, now, bucket)
        cost = min(cost, bucket.capacity)
        if account.points >= cost:
            account.points -= cost
            account.throttled_cost = 0
            return None
        account.throttled_cost = cost
        refusal = self._still_throttled(account)
        assert refusal is not None
        return refusal

    def refund(self, key: K, points: int, now: float) -> None:
        """Give back `points` a document was charged and did not use."""
        account = self._accounts.get(key)
        if account is not None and points > 0:
            self._refill(account, now)
            account.points = min(float(account.bucket.capacity), account.points + points)

    def status(self, key: K, now: float, bucket: CostBucket) -> ThrottleStatus:
        """The key's bucket now (a key without an account has a full one)."""
        account = self._accounts.get(key)
        if account is not None:
            self._refill(account, now)
        points = bucket.capacity if account is None else account.points
        return ThrottleStatus(bucket.capacity, int(points), bucket.restore_per_s)

    def __len__(self) -> int:
        """Keys with an account: the memory this holds."""
        return len(self._accounts)

    def _account(self, key: K, now: float, bucket: CostBucket) -> _Account:
        self._sweep(now)
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _Account(bucket, self.burst, float(bucket.capacity), now)
        elif account.bucket != bucket:  # the settings of a key's kind do not change while serve runs
            account.bucket = bucket
        self._refill(account, now)
        return account

    def _refill(self, account: _Account, now: float) -> None:
        elapsed = max(0.0, now - account.updated)
        account.tokens = min(self.burst, account.tokens + elapsed * self.rate)
        account.points = min(float(account.bucket.capacity), account.points + elapsed * account.bucket.restore_per_s)
        account.updated = max(account.updated, now)

    def _over_rate_or_running(self, account: _Account) -> Refusal | None:
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
        return None

    def _still_throttled(self, account: _Account) -> Refusal | None:
        missing = account.throttled_cost - account.points
        if missing <= 0:
            return None
        b = account.bucket
        return Refusal(
            f"throttled: this API key's query cost budget has {int(account.points):,} of its {b.capacity:,} points "
            f"and its document asks for {account.throttled_cost:,}; it restores {b.restore_per_s:,} points a second "
            f"({b.kind}_cost_bucket, {b.kind}_cost_restore_per_s). Try again after Retry-After; "
            "`extensions.cost` of every answer says what its document cost",
            retry_after_s=max(1, math.ceil(missing / b.restore_per_s)),
            code=THROTTLED,
        )

    def _sweep(self, now: float) -> None:
        # At most once per refill period, so the work stays proportional to the requests made.
        if now - self._swept < self.refill_s:
            return
        self._swept = now
        idle = []
        for key, account in self._accounts.items():
            if account.running:
                continue
            self._refill(account, now)
            if account.tokens >= self.burst and account.points >= account.bucket.capacity:
                idle.append(key)
        for key in idle:
            del self._accounts[key]
