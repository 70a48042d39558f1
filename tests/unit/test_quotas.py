"""Per-key request quotas and cost buckets (app.policy.quotas): pure, time passed in."""

from app.config import Settings
from app.policy.quotas import CostBucket, KeyQuotas, Refusal, cost_bucket_for

B = CostBucket(capacity=1_000, restore_per_s=100)  # the cost bucket of the keys that only count requests


def test_a_key_may_burst_twice_its_rate_then_goes_at_its_rate() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=5, max_running=100)
    # given a fresh key: 10 requests at once are admitted, the 11th is refused
    for _ in range(10):
        assert quotas.admit("k", now=0.0, bucket=B) is None
        quotas.release("k")
    refusal = quotas.admit("k", now=0.0, bucket=B)
    assert isinstance(refusal, Refusal) and "rate of 5 requests per second" in refusal.message
    assert refusal.retry_after_s == 1  # 1/5 s, rounded up to a whole second, at least 1
    # when a fifth of a second has passed, then exactly one more is admitted
    assert quotas.admit("k", now=0.2, bucket=B) is None
    quotas.release("k")
    assert quotas.admit("k", now=0.2, bucket=B) is not None


def test_retry_after_is_the_whole_seconds_until_a_token_is_back() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=1, max_running=100)
    assert quotas.admit("k", now=0.0, bucket=B) is None and quotas.admit("k", now=0.0, bucket=B) is None
    quotas.release("k")
    quotas.release("k")
    refusal = quotas.admit("k", now=0.1, bucket=B)
    assert refusal is not None and refusal.retry_after_s == 1  # 0.9 s away
    # a refused request takes no token: the bucket keeps filling
    assert quotas.admit("k", now=1.0, bucket=B) is None


def test_keys_do_not_share_a_bucket() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=1, max_running=100)
    assert quotas.admit("a", 0.0, B) is None and quotas.admit("a", 0.0, B) is None
    assert quotas.admit("a", 0.0, B) is not None
    assert quotas.admit("b", 0.0, B) is None


def test_at_most_max_running_requests_of_a_key_at_once() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=2)
    assert quotas.admit("k", 0.0, B) is None and quotas.admit("k", 0.0, B) is None
    refusal = quotas.admit("k", 0.0, B)
    assert refusal is not None and "2 requests running" in refusal.message and refusal.retry_after_s == 1
    assert quotas.admit("other", 0.0, B) is None  # another key is not held back
    quotas.release("k")
    assert quotas.admit("k", 0.0, B) is None


def test_idle_keys_with_full_buckets_are_forgotten() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=10, max_running=5)
    # given 10,000 keys that made one request each and finished, and one whose request runs on
    for i in range(10_000):
        assert quotas.admit(f"k{i}", now=0.0, bucket=B) is None
        quotas.release(f"k{i}")
    assert quotas.admit("running", now=0.0, bucket=B) is None
    # when their buckets have refilled (20 tokens at 10/s: 2 s) and another request comes
    assert quotas.admit("new", now=2.0, bucket=B) is None
    # then only the new key and the one still running are held
    assert len(quotas) == 2
    # and a forgotten key starts again as a new one: with a full bucket
    for _ in range(20):
        assert quotas.admit("k0", now=2.0, bucket=B) is None
        quotas.release("k0")
    assert quotas.admit("k0", now=2.0, bucket=B) is not None


def test_a_key_that_spent_its_bucket_is_not_forgotten_early() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=10, max_running=100)
    for _ in range(20):
        assert quotas.admit("k", now=0.0, bucket=B) is None
        quotas.release("k")
    # a sweep at 1.9 s (bucket 19/20 full) must keep the key's debt
    assert quotas.admit("other", now=1.9, bucket=B) is None
    assert len(quotas) == 2
    for _ in range(19):
        assert quotas.admit("k", now=1.9, bucket=B) is None
        quotas.release("k")
    assert quotas.admit("k", now=1.9, bucket=B) is not None


# -- the cost bucket ------------------------------------------------------------------------------

SELLER = CostBucket(capacity=10_000, restore_per_s=1_000)


def test_a_document_is_paid_for_before_it_runs_and_what_it_did_not_return_flows_back() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=100)
    # given a fresh key: its bucket is full
    assert quotas.status("k", 0.0, SELLER).as_dict() == {
        "maximumAvailable": 10_000, "currentlyAvailable": 10_000, "restoreRate": 1_000
    }
    # when a document estimated at 4,400 points is charged, then they are gone while it runs
    assert quotas.charge("k", 4_400, now=0.0, bucket=SELLER) is None
    assert quotas.status("k", 0.0, SELLER).currently_available == 5_600
    # and when it returned 700, the other 3,700 come back
    quotas.refund("k", 3_700, now=0.0)
    assert quotas.status("k", 0.0, SELLER).currently_available == 9_300
    # and the bucket refills at its rate, never beyond its capacity
    assert quotas.status("k", 0.5, SELLER).currently_available == 9_800
    assert quotas.status("k", 60.0, SELLER).currently_available == 10_000
    quotas.refund("k", 5_000, now=60.0)
    assert quotas.status("k", 60.0, SELLER).currently_available == 10_000


def test_a_document_the_bucket_cannot_pay_for_is_throttled_until_it_could() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=100)
    # given a key that spent 7,000 of its 10,000 points
    assert quotas.charge("k", 7_000, now=0.0, bucket=SELLER) is None
    # when it sends a document of 4,400, then it is throttled and nothing is taken
    refusal = quotas.charge("k", 4_400, now=0.0, bucket=SELLER)
    assert refusal is not None and refusal.code == "THROTTLED"
    assert "has 3,000 of its 10,000 points" in refusal.message and "asks for 4,400" in refusal.message
    assert "seller_cost_bucket" in refusal.message and "seller_cost_restore_per_s" in refusal.message
    assert refusal.retry_after_s == 2  # 1,400 points missing at 1,000 a second: 1.4 s, rounded up
    assert quotas.status("k", 0.0, SELLER).currently_available == 3_000
    # and until the bucket holds 4,400, the key is refused before it is even authenticated
    early = quotas.refuse_early("k", now=1.0)
    assert early is not None and early.code == "THROTTLED" and early.retry_after_s == 1
    assert quotas.admit("k", now=1.0, bucket=SELLER) is not None
    # and once it does, the key is let through and the document paid for
    assert quotas.refuse_early("k", now=1.4) is None
    assert quotas.admit("k", now=1.4, bucket=SELLER) is None
    assert quotas.charge("k", 4_400, now=1.4, bucket=SELLER) is None
    assert quotas.status("k", 1.4, SELLER).currently_available == 0


def test_an_in_flight_refund_lifts_a_throttle_early() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=100)
    # given two documents of 4,400 running, and a third throttled
    assert quotas.charge("k", 4_400, now=0.0, bucket=SELLER) is None
    assert quotas.charge("k", 4_400, now=0.0, bucket=SELLER) is None
    assert quotas.charge("k", 4_400, now=0.0, bucket=SELLER) is not None
    assert quotas.refuse_early("k", now=0.1) is not None
    # when the first one returned only 600, then the bucket covers the third again at once
    quotas.refund("k", 3_800, now=0.1)
    assert quotas.refuse_early("k", now=0.1) is None


def test_refusing_early_knows_only_keys_that_were_admitted_and_changes_nothing() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=1, max_running=1)
    # an unknown key (perhaps not a key at all) is not refused early, and opens no account
    for i in range(1_000):
        assert quotas.refuse_early(f"guess{i}", now=0.0) is None
    assert len(quotas) == 0
    # a key running its one request is refused early, and asking changes nothing
    assert quotas.admit("k", now=0.0, bucket=SELLER) is None
    for _ in range(5):
        refusal = quotas.refuse_early("k", now=0.0)
        assert refusal is not None and refusal.code == "RATE_LIMITED" and "1 requests running" in refusal.message
    quotas.release("k")
    # a key over its rate likewise, until a token is back
    assert quotas.admit("k", now=0.0, bucket=SELLER) is None
    quotas.release("k")
    refusal = quotas.refuse_early("k", now=0.5)
    assert refusal is not None and "rate of 1 requests per second" in refusal.message
    assert quotas.refuse_early("k", now=1.0) is None


def test_a_document_above_the_capacity_is_charged_a_full_bucket() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=100)
    # Settings refuse a bucket below the cost limit; should one be set anyway, such a document
    # waits for a full bucket instead of being throttled for ever
    assert quotas.charge("k", 50_000, now=0.0, bucket=SELLER) is None
    refusal = quotas.charge("k", 50_000, now=0.0, bucket=SELLER)
    assert refusal is not None and refusal.retry_after_s == 10


def test_a_key_with_a_spent_cost_bucket_is_not_forgotten_until_it_refills() -> None:
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=10, max_running=100)
    assert quotas.charge("k", 10_000, now=0.0, bucket=SELLER) is None
    # sweeps come with other keys' requests: at 5 s the bucket holds 5,000 and the key is kept
    assert quotas.admit("other", now=5.0, bucket=SELLER) is None
    quotas.release("other")
    assert len(quotas) == 2
    assert quotas.charge("k", 6_000, now=5.0, bucket=SELLER) is not None
    # at 20 s both are full again, idle and forgotten
    assert quotas.admit("third", now=20.0, bucket=SELLER) is None
    assert len(quotas) == 1


def test_each_kind_of_key_has_its_own_bucket() -> None:
    settings = Settings(seller_cost_bucket=6_000, seller_cost_restore_per_s=300,
                        operator_cost_bucket=90_000, operator_cost_restore_per_s=9_000)
    assert cost_bucket_for(settings, operator=False) == CostBucket(6_000, 300, "seller")
    assert cost_bucket_for(settings, operator=True) == CostBucket(90_000, 9_000, "operator")
    quotas: KeyQuotas[str] = KeyQuotas(requests_per_s=100, max_running=100)
    operator = cost_bucket_for(settings, operator=True)
    assert quotas.charge("op", 50_000, now=0.0, bucket=operator) is None
    refusal = quotas.charge("op", 50_000, now=0.0, bucket=operator)
    assert refusal is not None and "operator_cost_bucket" in refusal.message and refusal.retry_after_s == 2
    assert quotas.charge("seller", 5_000, now=0.0, bucket=cost_bucket_for(settings, operator=False)) is None
