"""Retry policy: what an attempt's outcome means and when to try again. Pure: the caller passes
the random source and reads the clock."""

from __future__ import annotations

import enum
from collections.abc import Callable

from app.types import SendResult

FAILING_DISABLE_AFTER_S = 5 * 86400  # a webhook whose events have only failed this long is disabled


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"  # 429: retry, and halve the webhook's live concurrency
    GONE = "gone"  # 410: the receiver asks us to stop; disable the webhook at once


def classify(result: SendResult) -> Outcome:
    """What one attempt's result means for its event and webhook (SPEC §5, outcome)."""
    if result.ok:
        return Outcome.DELIVERED
    if result.status_code == 410:
        return Outcome.GONE
    if result.status_code == 429:
        return Outcome.RATE_LIMITED
    return Outcome.RETRY  # timeouts, connection errors, 3xx (never followed), every other status


def backoff_ms(attempt: int, base_ms: int, max_ms: int, rand: Callable[[], float]) -> int:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))].
    `attempt` is the number of attempts made so far (≥ 1); `rand()` is uniform in [0, 1)."""
    # The exponent is clamped so a huge attempt count cannot build a giant integer; 2^40 × any
    # sane base is far beyond any max_ms.
    ceiling = min(max_ms, base_ms * 2 ** min(max(attempt - 1, 0), 40))
    return int(rand() * ceiling)


def next_delay_ms(result: SendResult, attempt: int, base_ms: int, max_ms: int, rand: Callable[[], float]) -> int:
    """Delay before the next attempt: the receiver's Retry-After when it gave one (capped at
    `max_ms`), else the jittered backoff."""
    if result.retry_after_s is not None:
        return min(max_ms, max(0, int(result.retry_after_s * 1000)))
    return backoff_ms(attempt, base_ms, max_ms, rand)


def should_fail(attempts_made: int, max_attempts: int) -> bool:
    """True when the event has used its attempt budget and becomes FAILED."""
    return attempts_made >= max_attempts


def halved(live: int) -> int:
    """A 429's live concurrency: half, rounded down, never below 1."""
    return max(1, live // 2)


def next_concurrency(live: int, configured: int, delivered: int, rate_limited: int) -> int:
    """A webhook's live concurrency after a batch of outcomes recorded together: `delivered`
    successes and `rate_limited` 429s among them (other outcomes count for nothing). Any 429
    halves it, once per batch, and the batch's successes add nothing; otherwise each success adds
    one, and the result never exceeds `configured` (lowered below `live`, the webhook drops to it).

    The one statement of the rule. `Lanes.halve` applies a 429 at once with `halved`; the
    recorder applies it to many webhooks in one statement, in SQL
    (app.store.delivery.record_webhook_health), which mirrors this function:
    tests/integration/test_concurrency_rule.py drives that SQL through a table of outcome batches on a real
    database and pins it to this function's result for each."""
    if rate_limited > 0:
        return halved(live)
    return min(configured, live + delivered)
