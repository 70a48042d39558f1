"""app.policy.attempt: the one attempt builder. Pure: no database, no network."""

from datetime import UTC, datetime, timedelta
from typing import Any

from app.policy.attempt import build_attempt, live_secrets
from app.policy.envelope import PayloadJSON
from app.policy.ids import encode
from app.types import EntityType, Format, Header, Method

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
HOOK: dict[str, Any] = {
    "url": "https://erp.example.com/hooks",
    "method": "PUT",
    "format": "xml",
    "headers": [{"name": "X-Team", "value": "billing"}],
    "timeout_seconds": 7,
    "secret": "whsec_new",
    "previous_secret": "whsec_old",
    "previous_secret_expires_at": NOW + timedelta(hours=1),
}


def test_the_previous_secret_signs_beside_the_current_one_until_it_expires() -> None:
    assert live_secrets(HOOK, NOW) == ("whsec_new", "whsec_old")
    assert live_secrets(HOOK, NOW + timedelta(hours=1)) == ("whsec_new",)
    assert live_secrets({**HOOK, "previous_secret": None}, NOW) == ("whsec_new",)
    assert live_secrets({**HOOK, "previous_secret_expires_at": None}, NOW) == ("whsec_new",)


def test_an_entity_event_carries_the_webhooks_configuration_and_global_ids() -> None:
    out = build_attempt(
        HOOK,
        webhook_id=3,
        event_id="evt_1",
        action="updated",
        entity_type=EntityType("invoice"),
        entity_id=42,
        sequence=9,
        changed_at=NOW - timedelta(seconds=5),
        payload=PayloadJSON('{"data":{}}'),
        now=NOW,
        allow_private_targets=False,
    )
    assert (out.url, out.method, out.format, out.headers) == (
        HOOK["url"],
        Method.PUT,
        Format.XML,
        (Header("X-Team", "billing"),),
    )
    assert (out.secrets, out.message_id, out.sequence, out.timeout_s, out.allow_private_targets) == (
        ("whsec_new", "whsec_old"),
        "evt_1",
        9,
        7.0,
        False,
    )
    assert out.body["id"] == "evt_1" and out.body["event"] == "invoice.updated"
    assert out.body["webhook_id"] == encode("Webhook", 3)
    assert out.body["entity"] == {"type": "Invoice", "id": encode("Invoice", 42)}
    assert out.body["payload"] == '{"data":{}}'


def test_a_ping_has_no_entity() -> None:
    out = build_attempt(
        HOOK,
        webhook_id=3,
        event_id="evt_2",
        action="ping",
        entity_type=None,
        entity_id=None,
        sequence=1,
        changed_at=NOW,
        payload={},
        now=NOW,
        allow_private_targets=True,
    )
    assert (out.body["event"], out.body["entity"], out.body["payload"]) == ("ping", None, {})
    assert out.allow_private_targets is True
