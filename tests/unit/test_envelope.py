"""The delivery body of SPEC §5, event ids and payload hashes: pure, no database, no clock."""

from datetime import UTC, datetime, timedelta, timezone

from app.policy.envelope import build_body, encode_payload, event_name, new_event_id, payload_hash
from app.policy.ids import encode as global_id
from app.types import EntityType

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _ulid_ms(event_id: str) -> int:
    value = 0
    for char in event_id.removeprefix("evt_"):
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    return value >> 80


def test_event_ids_are_ulids_carrying_their_millisecond() -> None:
    # given a fixed time
    now_ms = 1_795_000_000_123
    # when ids are made at that time
    ids = {new_event_id(now_ms) for _ in range(1000)}
    # then each is evt_ + 26 Crockford characters, unique, and decodes back to the time
    assert len(ids) == 1000
    for event_id in ids:
        assert event_id.startswith("evt_") and len(event_id) == 30 and set(event_id[4:]) <= CROCKFORD
        assert _ulid_ms(event_id) == now_ms


def test_event_ids_sort_by_time() -> None:
    earlier, later = new_event_id(1_000), new_event_id(1_001)
    assert earlier < later
    assert new_event_id() > new_event_id(1_000)  # the default is the clock


def test_the_body_matches_the_contract_example() -> None:
    # given the example of SPEC §5
    created_at = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    payload = {"data": {"node": {"id": "SW52b2ljZTox", "status": "PAID"}}}
    # when the body is built
    body = build_body(
        event_id="evt_01JD",
        action="updated",
        webhook_global_id=global_id("Webhook", 1),
        entity_type=EntityType.INVOICE,
        entity_global_id=global_id("Invoice", 1),
        sequence=42,
        created_at=created_at,
        payload=payload,
    )
    # then it is exactly the documented tree, in the documented order
    assert body == {
        "id": "evt_01JD",
        "event": "invoice.updated",
        "event_name": "update",
        "webhook_id": "V2ViaG9vazox",
        "entity": {"type": "Invoice", "id": "SW52b2ljZTox"},
        "sequence": 42,
        "created_at": "2026-11-22T10:00:00.123456Z",
        "payload": payload,
    }
    assert list(body) == ["id", "event", "event_name", "webhook_id", "entity", "sequence", "created_at", "payload"]


def test_event_names_per_type_and_action() -> None:
    assert event_name(EntityType.REFUND_REQUEST, "created") == "refund_request.created"
    assert event_name(EntityType.VARIANT, "deleted") == "variant.deleted"
    assert event_name(None, "ping") == "ping"
    for action, short in (("created", "create"), ("updated", "update"), ("deleted", "delete")):
        body = build_body(
            event_id="evt_X",
            action=action,
            webhook_global_id="V2ViaG9vazox",
            entity_type=EntityType.VARIANT,
            entity_global_id=global_id("Variant", 7),
            sequence=1,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            payload={},
        )
        assert (body["event"], body["event_name"]) == (f"variant.{action}", short)


def test_a_ping_has_no_entity_and_an_empty_payload() -> None:
    body = build_body(
        event_id="evt_P",
        action="ping",
        webhook_global_id="V2ViaG9vazox",
        entity_type=None,
        entity_global_id=None,
        sequence=3,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={},
    )
    assert (body["event"], body["event_name"], body["entity"], body["payload"]) == ("ping", "ping", None, {})


def test_created_at_is_utc_with_microseconds_whatever_the_input_zone() -> None:
    paris = timezone(timedelta(hours=1))
    body = build_body(
        event_id="evt_T",
        action="created",
        webhook_global_id="V2ViaG9vazox",
        entity_type=EntityType.INVOICE,
        entity_global_id=global_id("Invoice", 1),
        sequence=1,
        created_at=datetime(2026, 11, 22, 11, 0, 0, tzinfo=paris),
        payload={},
    )
    assert body["created_at"] == "2026-11-22T10:00:00.000000Z"


def test_payload_hash_is_of_the_encoded_text_and_sees_every_value() -> None:
    # given a payload, the same payload built again, and its encoded text
    a = {"data": {"node": {"id": "x", "status": "PAID", "lines": [1, 2]}}}
    again = {"data": {"node": {"id": "x", "status": "PAID", "lines": [1, 2]}}}
    text = encode_payload(a)
    # then equal results hash equal whichever form is hashed, and the text keeps the key order
    assert payload_hash(a) == payload_hash(again) == payload_hash(text) and len(payload_hash(a)) == 32
    assert text == '{"data":{"node":{"id":"x","status":"PAID","lines":[1,2]}}}'
    # and any change of a value (or of what the query returned) changes the hash
    assert payload_hash(a) != payload_hash({"data": {"node": {"id": "x", "status": "PAID", "lines": [2, 1]}}})
    assert payload_hash({"data": None}) != payload_hash({"data": None, "errors": [{"message": "boom"}]})
