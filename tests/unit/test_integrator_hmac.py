"""The integrator-keyed HMAC (Marketplacer's scheme) on values: checked against an independent
computation with hmac + hashlib, and carried by the one attempt builder."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from app.policy.attempt import build_attempt
from app.policy.signing import DEFAULT_HMAC_HEADER, integrator_hmac, new_secret

BODY = '{"id":"evt_1","payload":{"data":{"node":{"name":"Café"}}}}'.encode()
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def expected(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def test_the_value_is_base64_hmac_sha256_of_the_exact_body() -> None:
    assert integrator_hmac("s3cr3t", BODY) == expected("s3cr3t", BODY)
    assert integrator_hmac("ключ", BODY) == expected("ключ", BODY)  # the key's UTF-8 bytes
    assert integrator_hmac("s3cr3t", BODY + b" ") != integrator_hmac("s3cr3t", BODY)


def _webhook(**extra: object) -> dict[str, object]:
    return {
        "url": "https://erp.example.com/h", "method": "POST", "format": "json", "headers": [],
        "secret": new_secret(), "previous_secret": None, "previous_secret_expires_at": None,
        "timeout_seconds": 5, **extra,
    }


def _attempt(webhook: dict[str, object]):  # type: ignore[no-untyped-def]
    return build_attempt(
        webhook, webhook_id=1, event_id="evt_1", action="ping", entity_type=None, entity_id=None, sequence=1,
        changed_at=NOW, payload={}, now=NOW, allow_private_targets=False,
    )


def test_the_attempt_carries_the_key_and_header_when_a_key_is_set() -> None:
    out = _attempt(_webhook(hmac_key="k", hmac_header="X-Sig"))
    assert (out.hmac_key, out.hmac_header) == ("k", "X-Sig")
    out = _attempt(_webhook(hmac_key="k", hmac_header=None))
    assert out.hmac_header == DEFAULT_HMAC_HEADER == "Marketplacer-Hmac-256"
    assert _attempt(_webhook()).hmac_key is None
    assert _attempt(_webhook(hmac_key=None, hmac_header="X-Sig")).hmac_key is None
