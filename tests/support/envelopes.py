"""A sample webhook envelope (nested payload, escapes, a null, a list) that the transport's tests
render and send in every format."""

from typing import Any

BODY: dict[str, Any] = {
    "id": "evt_1",
    "event": "invoice.updated",
    "event_name": "update",
    "webhook_id": "V2ViaG9vazox",
    "entity": {"type": "Invoice", "id": "SW52b2ljZTox"},
    "sequence": 3,
    "created_at": "2026-11-22T10:00:00.000000Z",
    "payload": {
        "data": {
            "node": {
                "id": "SW52b2ljZTox",
                "status": "PAID",
                "note": "Tom & Jerry <café>",
                "paid": True,
                "shipment": None,
                "lineItems": [{"q": 1}, {"q": 2}],
            }
        }
    },
}

