"""Which parts of an attempt's request are masked before it is stored (app.policy.masking)."""

from __future__ import annotations

import pytest

from app.policy.masking import MASK, mask_request, mask_url, mask_value
from app.types import SentRequest


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("Authorization", "Bearer sk_live_1", f"Bearer {MASK}"),
        ("authorization", "Basic eDEyMw==", f"Basic {MASK}"),
        ("Authorization", "opaque-token", MASK),
        ("Proxy-Authorization", "Basic eDEyMw==", f"Basic {MASK}"),
        ("X-Api-Key", "k1", MASK),
        ("X-Auth-Token", "t1", MASK),
        ("X-Client-Secret", "s1", MASK),
        ("X-Password", "p", MASK),
        ("Cookie", "session=abc", MASK),
        ("webhook-signature", "v1,abc= v1,def=", MASK),
        ("Marketplacer-Hmac-256", "abc=", MASK),
        # the engine's own headers that only look secret, and ordinary ones
        ("Idempotency-Key", "evt_01", "evt_01"),
        ("webhook-id", "evt_01", "evt_01"),
        ("X-Tenant", "acme", "acme"),
        ("Content-Type", "application/json", "application/json"),
    ],
)
def test_header_values(name: str, value: str, stored: str) -> None:
    assert mask_value(name, value) == stored


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://erp.example/in", "https://erp.example/in"),
        ("https://user:pw@erp.example/in", f"https://user:{MASK}@erp.example/in"),
        ("https://user@erp.example/in", "https://user@erp.example/in"),
        ("https://erp.example/in?token=abc&x=1", f"https://erp.example/in?token={MASK}&x=1"),
        ("https://erp.example/in?API_KEY=abc", f"https://erp.example/in?API_KEY={MASK}"),
        ("https://erp.example/in?a=%20b&c", "https://erp.example/in?a=%20b&c"),  # untouched byte for byte
        ("https://u:p@erp.example/in?sig=1&signature=2", f"https://u:{MASK}@erp.example/in?sig=1&signature={MASK}"),
    ],
)
def test_urls(url: str, stored: str) -> None:
    assert mask_url(url) == stored


def test_a_request_keeps_its_body_and_header_order() -> None:
    sent = SentRequest("POST", "https://u:p@x.example/", (("B", "1"), ("Authorization", "Bearer t"), ("A", "2")), b"{}")
    masked = mask_request(sent)
    assert masked.headers == (("B", "1"), ("Authorization", f"Bearer {MASK}"), ("A", "2"))
    assert masked.body is sent.body and masked.method == "POST"
    assert masked.url == f"https://u:{MASK}@x.example/"
