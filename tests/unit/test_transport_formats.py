"""Request bodies per format (JSON, XML, form) and Retry-After parsing (sending them over real
HTTP: integration/test_transport.py)."""

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from app.transport.http import parse_retry_after, render_body
from app.types import Format
from tests.support.envelopes import BODY


def test_json_is_compact_utf8() -> None:
    body, content_type = render_body(BODY, Format.JSON)
    assert content_type == "application/json"
    assert body.startswith(b'{"id":"evt_1","event":"invoice.updated",') and b" " not in body.split(b"note")[0]
    assert "café".encode() in body and json.loads(body) == BODY


def test_xml_is_the_same_tree_under_notification() -> None:
    body, content_type = render_body(BODY, Format.XML)
    assert content_type == "application/xml"
    root = ET.fromstring(body)
    assert root.tag == "notification" and root.findtext("id") == "evt_1" and root.findtext("sequence") == "3"
    assert root.findtext("entity/type") == "Invoice"
    node = root.find("payload/data/node")
    assert node is not None
    assert node.findtext("note") == "Tom & Jerry <café>"  # escaped on the wire, intact when parsed
    assert node.findtext("paid") == "true"
    shipment = node.find("shipment")
    assert shipment is not None and len(shipment) == 0 and not shipment.text  # None → empty element
    assert [i.findtext("q") for i in node.findall("lineItems/item")] == ["1", "2"]


def test_form_carries_the_envelope_fields_and_payload_as_json_text() -> None:
    body, content_type = render_body(BODY, Format.FORM)
    assert content_type == "application/x-www-form-urlencoded"
    fields = {k: v[0] for k, v in parse_qs(body.decode(), strict_parsing=True).items()}
    assert set(fields) == {"id", "event", "sequence", "created_at", "payload"}
    assert fields["id"] == "evt_1" and fields["sequence"] == "3" and fields["event"] == "invoice.updated"
    assert json.loads(fields["payload"]) == BODY["payload"]


NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 22 Nov 2026 10:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 09:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_as_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds

