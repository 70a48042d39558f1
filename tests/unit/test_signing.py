"""Standard Webhooks signatures, verified with the reference `standardwebhooks` library.
(The two-secret rotation case lives in test_policy.py.)"""

import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.policy.signing import new_secret, sign

BODY = b'{"id":"evt_1","payload":{"data":{"node":{"name":"Caf\xc3\xa9"}}}}'


def headers(message_id: str, timestamp_s: int, signature_header: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature_header,
    }


def test_one_secret_signs_one_v1_signature_the_library_verifies() -> None:
    # given a secret and an attempt timestamp close to now
    secret, now = new_secret(), int(time.time())
    # when
    header = sign([secret], "evt_1", now, BODY)
    # then
    assert header.startswith("v1,") and " " not in header
    assert Webhook(secret).verify(BODY, headers("evt_1", now, header))["id"] == "evt_1"


@pytest.mark.parametrize(
    ("message_id", "timestamp_shift_s", "body"),
    [("evt_other", 0, BODY), ("evt_1", 1, BODY), ("evt_1", 0, BODY.replace(b"Caf", b"Cof"))],
)
def test_any_change_to_id_timestamp_or_body_breaks_the_signature(
    message_id: str, timestamp_shift_s: int, body: bytes
) -> None:
    secret, now = new_secret(), int(time.time())
    header = sign([secret], "evt_1", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers(message_id, now + timestamp_shift_s, header))


def test_no_live_secret_signs_nothing() -> None:
    assert sign([], "evt_1", 1, BODY) == ""
