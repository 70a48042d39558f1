"""hookql's own CPU per attempt around the HTTP request, no I/O: building the attempt from a
claimed event (`outgoing_for`), rendering and signing it (`signed_request`) and shaping its record
(`attempt_values`, secrets masked). Compare with the client's own cost per request
(scripts/http_client_cost.py).

    python scripts/attempt_overhead.py

One run on the shared 2-core VM (2026-12-03), µs per attempt: outgoing_for 9.7, signed_request
9.0, attempt_values 2.9 (a 593-byte body, one secret, one custom header).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from app.config import Settings
from app.policy.signing import new_secret
from app.store.attempts import outgoing_for
from app.store.delivery import ClaimedEvent, attempt_values
from app.transport.http import signed_request
from app.types import SendResult, SentRequest

ROUNDS = 20_000


def timed(name: str, fn: Callable[[], object]) -> None:
    for _ in range(500):
        fn()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        fn()
    print(f"{name:32s} {1e6 * (time.perf_counter() - started) / ROUNDS:6.1f} µs")


def main() -> None:
    line = {"quantity": 2, "variant": {"sku": "NOR-001-RED"}}
    payload = orjson.dumps(
        {"data": {"invoice": {"id": "SW52b2ljZTox", "status": "PAID", "total": {"amount": "12.50"},
                              "lineItems": [line] * 6}}}
    ).decode()
    now = datetime.now(UTC)
    row = ClaimedEvent(
        1, "evt_01HX", 7, "invoice", 42, "invoice.updated", 3, payload, now, 0,
        "http://127.0.0.1:9000/hook", "POST", "json", [{"name": "X-Shop", "value": "north"}], new_secret(),
        None, None, 10, 20, 10, 10, None, 3, None, None,
    )
    settings = Settings()
    out = outgoing_for(row, settings, now)
    body, headers = signed_request(out, now)
    result = SendResult(
        started_at=now, duration_ms=3, status_code=200, response_headers={"Content-Type": "text/plain"},
        response_body="ok", request=SentRequest("POST", out.url, tuple(headers.items()), body),
    )
    timed("outgoing_for", lambda: outgoing_for(row, settings, now))
    timed("signed_request", lambda: signed_request(out, now))
    timed("attempt_values (masking included)", lambda: attempt_values(1, 7, result))
    print(f"({len(body)}-byte body)")


if __name__ == "__main__":
    main()
