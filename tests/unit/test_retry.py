"""Retry policy edge cases: every status code, huge attempt counts, odd Retry-After values, live
concurrency over a sequence of answers. (The basic cases live in test_policy.py.)"""

from datetime import UTC, datetime

from app.policy.retry import Outcome, backoff_ms, classify, next_concurrency, next_delay_ms
from app.types import SendResult

T0 = datetime(2026, 11, 22, tzinfo=UTC)
BASE_MS, MAX_MS = 1000, 60_000


def result(status: int | None = None, retry_after_s: float | None = None) -> SendResult:
    return SendResult(started_at=T0, duration_ms=1, status_code=status, retry_after_s=retry_after_s)


def test_every_2xx_is_delivered() -> None:
    assert {classify(result(s)) for s in range(200, 300)} == {Outcome.DELIVERED}


def test_every_other_status_is_retried_including_redirects() -> None:
    others = [s for s in (*range(100, 200), *range(300, 600)) if s not in (410, 429)]
    assert {s: classify(result(s)) for s in others} == dict.fromkeys(others, Outcome.RETRY)


def test_huge_attempt_counts_stay_capped_and_cheap() -> None:
    assert backoff_ms(10**9, BASE_MS, MAX_MS, lambda: 1.0) == MAX_MS
    assert backoff_ms(0, BASE_MS, MAX_MS, lambda: 1.0) == BASE_MS  # defensive: treated as the first


def test_retry_after_below_a_second_is_kept_and_a_negative_one_means_now() -> None:
    assert next_delay_ms(result(429, retry_after_s=0.5), 1, BASE_MS, MAX_MS, lambda: 1.0) == 500
    assert next_delay_ms(result(503, retry_after_s=-3), 1, BASE_MS, MAX_MS, lambda: 1.0) == 0


def test_429_halves_live_concurrency_down_to_one_and_successes_climb_back_one_at_a_time() -> None:
    live = 10
    for expected in (5, 2, 1, 1):
        live = next_concurrency(live, 10, delivered=0, rate_limited=1)
        assert live == expected
    for expected in (2, 3, 4):
        live = next_concurrency(live, 10, delivered=1, rate_limited=0)
        assert live == expected
    assert next_concurrency(10, 10, delivered=1, rate_limited=0) == 10
    assert next_concurrency(12, 10, delivered=1, rate_limited=0) == 10  # configured lowered while above it
