"""The client commands' pure parts: argument parsing, endpoint URLs, tables, a delivery's line."""

from __future__ import annotations

import argparse

import pytest

from app.api.listen import WebhookListenReportInput, _reported_result
from app.cli import build_parser
from app.client.commands import _events, _type
from app.client.graphql import ClientError, endpoint
from app.client.listen import LocalAnswer, check_forward_to, delivery_line
from app.client.tables import cell, fields, percent, table


@pytest.mark.parametrize(("given", "expected"), [
    ("invoice", "INVOICE"), ("Invoice", "INVOICE"), ("RefundRequest", "REFUND_REQUEST"),
    ("refund-request", "REFUND_REQUEST"), ("refund_request", "REFUND_REQUEST"), ("VARIANT", "VARIANT"),
])
def test_types_are_taken_as_people_write_them(given: str, expected: str) -> None:
    assert _type(given) == expected


def test_an_unknown_type_or_event_is_refused_naming_the_choices() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="INVOICE, VARIANT, REFUND_REQUEST"):
        _type("order")
    with pytest.raises(argparse.ArgumentTypeError, match="CREATED, UPDATED, DELETED"):
        _events("created,paid")
    assert _events("created, Updated") == ("CREATED", "UPDATED")


def test_the_endpoint_is_the_servers_graphql_url() -> None:
    assert endpoint("http://127.0.0.1:8000") == "http://127.0.0.1:8000/graphql"
    assert endpoint("https://hooks.example.com/graphql/") == "https://hooks.example.com/graphql"
    for bad in ("127.0.0.1:8000", "ftp://x", "http://"):
        with pytest.raises(ClientError, match="not a server URL"):
            endpoint(bad)
    with pytest.raises(ClientError, match="--forward-to"):
        check_forward_to("localhost:3000/hooks")


def test_tables_pad_columns_and_show_nothing_as_a_dash() -> None:
    text = table(["ID", "STATUS"], [["a", 200], ["bbbb", None]])
    assert text.splitlines() == ["ID    STATUS", "a     200", "bbbb  -"]
    assert cell("x" * 100).endswith("…") and len(cell("x" * 100)) == 60
    assert (percent(None), percent(1 / 3), cell(True)) == ("-", "33%", "yes")
    assert fields([("a", 1), ("long name", None)]).splitlines() == ["a:         1", "long name: -"]


def test_a_delivery_line_names_the_event_the_local_answer_and_the_outcome() -> None:
    delivery = {"event": "invoice.updated", "eventId": "evt_1", "sequence": 4, "attempt": 2, "method": "POST"}
    line = delivery_line(delivery, LocalAnswer(12, status_code=500), "retrying at …", "http://localhost/h")
    expected = "--> invoice.updated [evt_1] seq 4 try 2  <-- [500] POST http://localhost/h (12 ms): retrying at …"
    assert line.endswith(expected)
    timed_out = delivery_line(delivery, LocalAnswer(1000, error="timeout after 1 s"), "failed", "http://l/")
    assert "[timeout after 1 s]" in timed_out


def test_the_client_commands_parse() -> None:
    args = build_parser().parse_args(["webhooks", "events", "V2ViaG9vazox", "--status", "failed", "--json"])
    assert (args.command, args.webhooks_command, args.id, args.status, args.json) == (
        "webhooks", "events", "V2ViaG9vazox", "failed", True
    )
    args = build_parser().parse_args(["listen", "--forward-to", "http://localhost:3000", "--type", "invoice"])
    assert (args.type, args.webhook, args.events) == ("INVOICE", None, None)


def test_a_reported_answer_becomes_the_attempt_cut_to_what_an_attempt_keeps() -> None:
    result, errors = _reported_result(WebhookListenReportInput(
        event_id="x", duration_ms=30, status_code=429, response_headers={"Retry-After": "7", "X": "y"},
        response_body="é" * 5000,
    ))
    assert errors == [] and result is not None
    assert (result.status_code, result.retry_after_s, result.response_headers["X"]) == (429, 7.0, "y")
    assert len(result.response_body.encode()) <= 4096
    many = {f"h{i}": "v" * 100 for i in range(500)}
    result, _ = _reported_result(WebhookListenReportInput(event_id="x", duration_ms=1, status_code=200,
                                                           response_headers=many))
    assert result is not None and len(result.response_headers) == 100
