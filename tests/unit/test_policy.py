"""Pure policy: signing, retry schedule, coalescing — no database, network or clock."""

from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from app.policy.coalesce import fold
from app.policy.retry import Outcome, backoff_ms, classify, next_concurrency, next_delay_ms, should_fail
from app.policy.signing import new_secret, sign
from app.types import Action, SendResult

C, U, D = Action.CREATED, Action.UPDATED, Action.DELETED
T0 = datetime(2026, 11, 22, tzinfo=UTC)


def result(status: int | None = None, retry_after_s: float | None = None) -> SendResult:
    return SendResult(started_at=T0, duration_ms=1, status_code=status, retry_after_s=retry_after_s)


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44
    assert new_secret() != secret


def test_every_live_secret_signs_and_each_verifies() -> None:
    old, new = new_secret(), new_secret()
    now = int(datetime.now(UTC).timestamp())
    body = b'{"id":"evt_1","payload":{"data":{"node":null}}}'
    header = sign([new, old], "evt_1", now, body)
    assert len(header.split(" ")) == 2 and all(part.startswith("v1,") for part in header.split(" "))
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize(
    ("previous", "actions", "expected"),
    [
        (None, [C, U, U], C),
        (None, [U, D], D),
        (None, [C, D], None),
        (None, [C, U, D], None),
        (C, [U], C),
        (C, [D], None),
        (U, [U, U], U),
        (U, [D], D),
        (D, [C], U),
        (None, [], None),
        (U, [], U),
    ],
)
def test_fold(previous: Action | None, actions: list[Action], expected: Action | None) -> None:
    assert fold(previous, actions) == expected


def test_fold_is_associative_over_bursts_split_anywhere() -> None:
    burst = [C, U, U, D, C, U]
    for cut in range(len(burst) + 1):
        assert fold(fold(None, burst[:cut]), burst[cut:]) == fold(None, burst)


def test_outcomes() -> None:
    assert classify(result(204)) is Outcome.DELIVERED
    assert classify(result(410)) is Outcome.GONE
    assert classify(result(429)) is Outcome.RATE_LIMITED
    for failing in (301, 400, 500, None):
        assert classify(result(failing)) is Outcome.RETRY


def test_backoff_grows_exponentially_with_full_jitter_and_is_capped() -> None:
    assert [backoff_ms(n, 1000, 60_000, lambda: 1.0) for n in (1, 2, 3, 4, 10)] == [
        1000,
        2000,
        4000,
        8000,
        60_000,
    ]
    assert backoff_ms(3, 1000, 60_000, lambda: 0.0) == 0
    assert backoff_ms(3, 1000, 60_000, lambda: 0.5) == 2000


def test_retry_after_is_honoured_but_capped() -> None:
    assert next_delay_ms(result(503, retry_after_s=7), 1, 1000, 60_000, lambda: 1.0) == 7000
    assert next_delay_ms(result(503, retry_after_s=10**9), 1, 1000, 60_000, lambda: 1.0) == 60_000
    assert next_delay_ms(result(503), 2, 1000, 60_000, lambda: 1.0) == 2000


def test_attempt_budget_and_live_concurrency() -> None:
    assert not should_fail(19, 20) and should_fail(20, 20)
    assert next_concurrency(10, 10, delivered=0, rate_limited=1) == 5
    assert next_concurrency(1, 10, delivered=0, rate_limited=1) == 1
    assert next_concurrency(5, 10, delivered=1, rate_limited=0) == 6
    assert next_concurrency(10, 10, delivered=1, rate_limited=0) == 10
    assert next_concurrency(5, 10, delivered=0, rate_limited=0) == 5
