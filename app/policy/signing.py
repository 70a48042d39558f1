"""Delivery signatures, pure functions on values: the Standard Webhooks set
(https://www.standardwebhooks.com) every attempt carries, and the integrator-keyed HMAC a webhook
may add for receivers written for Marketplacer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
DEFAULT_HMAC_HEADER = "Marketplacer-Hmac-256"  # Marketplacer's own header name
MAX_HMAC_KEY_BYTES = 1024  # UTF-8 bytes of an integrator's key: far above any real one (32-64)


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    # Webhook() base64-decodes the secret; cache it so a hot webhook doesn't decode per attempt.
    return Webhook(secret)


def sign(secrets_: Sequence[str], message_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per live secret, space-separated
    (two during a rotation's overlap, so receivers holding either secret verify)."""
    when = datetime.fromtimestamp(timestamp_s, tz=UTC)
    text = body.decode()
    return " ".join(_signer(s).sign(message_id, when, text) for s in secrets_)


def integrator_hmac(key: str, body: bytes) -> str:
    """The integrator-keyed header's value: base64(HMAC-SHA256(key, body)), over the exact body
    bytes sent, with the key's UTF-8 bytes as the HMAC key (Marketplacer's scheme)."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
