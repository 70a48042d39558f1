"""Per-key request quotas (app.policy.quotas): pure, time passed in."""

from app.policy.quotas import KeyQuotas, Refusal


def test_a_key_may_burst_twice_its_rate_then_goes_at_its_rate() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=5, max_running=100)
    # given a fresh key: 10 requests at once are admitted, the 11th is refused
    for _ in range(10):
        assert quotas.admit("k", now=0.0) is None
        quotas.release("k")
    refusal = quotas.admit("k", now=0.0)
    assert isinstance(refusal, Refusal) and "rate of 5 requests per second" in refusal.message
    assert refusal.retry_after_s == 1  # 1/5 s, rounded up to a whole second, at least 1
    # when a fifth of a second has passed, then exactly one more is admitted
    assert quotas.admit("k", now=0.2) is None
    quotas.release("k")
    assert quotas.admit("k", now=0.2) is not None


def test_retry_after_is_the_whole_seconds_until_a_token_is_back() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=1, max_running=100)
    assert quotas.admit("k", now=0.0) is None and quotas.admit("k", now=0.0) is None
    quotas.release("k")
    quotas.release("k")
    refusal = quotas.admit("k", now=0.1)
    assert refusal is not None and refusal.retry_after_s == 1  # 0.9 s away
    # a refused request takes no token: the bucket keeps filling
    assert quotas.admit("k", now=1.0) is None


def test_keys_do_not_share_a_bucket() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=1, max_running=100)
    assert quotas.admit("a", 0.0) is None and quotas.admit("a", 0.0) is None
    assert quotas.admit("a", 0.0) is not None
    assert quotas.admit("b", 0.0) is None


def test_at_most_max_running_requests_of_a_key_at_once() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=2)
    assert quotas.admit("k", 0.0) is None and quotas.admit("k", 0.0) is None
    refusal = quotas.admit("k", 0.0)
    assert refusal is not None and "2 requests running" in refusal.message and refusal.retry_after_s == 1
    assert quotas.admit("other", 0.0) is None  # another key is not held back
    quotas.release("k")
    assert quotas.admit("k", 0.0) is None


def test_idle_keys_with_full_buckets_are_forgotten() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=10, max_running=5)
    # given 10,000 keys that made one request each and finished, and one whose request runs on
    for i in range(10_000):
        assert quotas.admit(f"k{i}", now=0.0) is None
        quotas.release(f"k{i}")
    assert quotas.admit("running", now=0.0) is None
    # when their buckets have refilled (20 tokens at 10/s: 2 s) and another request comes
    assert quotas.admit("new", now=2.0) is None
    # then only the new key and the one still running are held
    assert len(quotas) == 2
    # and a forgotten key starts again as a new one: with a full bucket
    for _ in range(20):
        assert quotas.admit("k0", now=2.0) is None
        quotas.release("k0")
    assert quotas.admit("k0", now=2.0) is not None


def test_a_key_that_spent_its_bucket_is_not_forgotten_early() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=10, max_running=100)
    for _ in range(20):
        assert quotas.admit("k", now=0.0) is None
        quotas.release("k")
    # a sweep at 1.9 s (bucket 19/20 full) must keep the key's debt
    assert quotas.admit("other", now=1.9) is None
    assert len(quotas) == 2
    for _ in range(19):
        assert quotas.admit("k", now=1.9) is None
        quotas.release("k")
    assert quotas.admit("k", now=1.9) is not None
