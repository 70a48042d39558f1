"""`hookql webhooks list | show | test | events` against a real `serve` subprocess: tables with the
health columns, `--json`, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.cli_server import Served, hookql, serving
from tests.support.hostile import free_port
from tests.support.receivers import Receiver

CREATE = """mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) {
  webhook { id } errors { field message } } }"""


@pytest.fixture
async def served(fixture_database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    # Private targets allowed: `webhooks test` pings a receiver on this machine.
    async with serving(fixture_database_url, tmp_path / "serve.log", allow_private_targets="true") as served:
        yield served


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def create(served: Served, url: str, key: str | None = None, name: str = "ERP") -> str:
    out = await served.gql(CREATE, {"input": {"name": name, "url": url, "type": "INVOICE"}}, key=key)
    assert out["webhookCreate"]["errors"] == []
    return str(out["webhookCreate"]["webhook"]["id"])


async def test_test_list_show_and_events_as_tables_and_json(served: Served, receiver: Receiver) -> None:
    webhook_id = await create(served, receiver.url + "/erp")

    tested = await hookql(served, "webhooks", "test", webhook_id)
    assert tested.returncode == 0, tested
    assert tested.stdout.startswith("ping evt_") and ": 200 in " in tested.stdout
    assert len(await receiver.wait_for(1)) == 1

    listed = await hookql(served, "webhooks", "list")
    assert listed.returncode == 0, listed
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "TYPE", "STATE", "LAST", "ATTEMPT", "LAST", "STATUS", "SUCCESS", "24H",
                              "BACKLOG", "URL"]
    assert row.split()[:4] == [webhook_id, "ERP", "INVOICE", "enabled"]
    assert row.split()[6:10] == ["200", "100%", "0", receiver.url + "/erp"]

    as_json = json.loads((await hookql(served, "webhooks", "list", "--json")).stdout)
    health = [(h["id"], h["lastStatusCode"], h["successRate24h"], h["backlog"], h["disabledReason"]) for h in as_json]
    assert health == [(webhook_id, 200, 1.0, 0, None)]
    assert as_json[0]["lastAttemptAt"] is not None

    shown = await hookql(served, "webhooks", "show", webhook_id)
    assert shown.returncode == 0
    lines = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert lines["last status"].strip() == "200" and lines["success 24h"].strip() == "100%"
    assert lines["state"].strip() == "enabled" and lines["url"].strip() == receiver.url + "/erp"
    assert json.loads((await hookql(served, "webhooks", "show", webhook_id, "--json")).stdout)["id"] == webhook_id

    events = await hookql(served, "webhooks", "events", webhook_id)
    assert events.returncode == 0
    header, row = events.stdout.splitlines()
    assert header.split()[:6] == ["ID", "EVENT", "STATUS", "SEQ", "ATTEMPTS", "LAST"]
    assert row.split()[1:6] == ["ping", "DELIVERED", "1", "1", "200"]
    delivered = json.loads((await hookql(served, "webhooks", "events", webhook_id, "--status", "delivered",
                                         "--json")).stdout)
    assert [e["event"] for e in delivered] == ["ping"]
    none = await hookql(served, "webhooks", "events", webhook_id, "--status", "FAILED")
    assert none.returncode == 0 and none.stdout.strip() == f"no FAILED events for webhook {webhook_id}"


async def test_a_failed_test_exits_non_zero_and_the_list_shows_why(served: Served, receiver: Receiver) -> None:
    receiver.respond = lambda n: (500, {}, b"down")
    webhook_id = await create(served, receiver.url)
    tested = await hookql(served, "webhooks", "test", webhook_id)
    assert tested.returncode == 1 and ": 500 in " in tested.stdout
    [hook] = json.loads((await hookql(served, "webhooks", "list", "--json")).stdout)
    assert (hook["enabled"], hook["disabledReason"], hook["lastStatusCode"], hook["successRate24h"]) == (
        False, "test failed", 500, 0.0
    )
    assert "disabled" in (await hookql(served, "webhooks", "list")).stdout


async def test_a_seller_sees_its_own_webhooks_only_and_foreign_or_malformed_ids_are_not_found(
    served: Served, receiver: Receiver
) -> None:
    theirs = await create(served, receiver.url, key=served.seller_keys[2], name="Theirs")
    ours = await create(served, receiver.url, key=served.seller_keys[1], name="Ours")
    mine = served.seller_keys[1]
    listed = json.loads((await hookql(served, "webhooks", "list", "--json", key=mine)).stdout)
    assert [h["id"] for h in listed] == [ours]
    for command in ("show", "test", "events"):
        for bad in (theirs, "not-an-id", "V2ViaG9vazo5OTk5OQ==", "x" * 5000):
            result = await hookql(served, "webhooks", command, bad, key=mine)
            assert result.returncode == 1, (command, bad, result)
            assert result.stderr == f"hookql: error: webhook {bad} not found (or not visible to this API key)\n"
            assert result.stdout == ""
    assert receiver.received == []  # nobody's webhook was tested
    [row] = await served.fetch("SELECT enabled FROM webhooks WHERE seller_id = 2")
    assert row["enabled"]


async def test_errors_are_one_line_with_a_non_zero_exit(served: Served) -> None:
    cases = {
        "cannot reach the hookql server": dict(url=f"http://127.0.0.1:{free_port()}"),
        "not a server URL": dict(url="ftp://example"),
        "the server refused the API key: invalid API key": dict(key="hk_wrong"),
    }
    for expected, how in cases.items():
        result = await hookql(served, "webhooks", "list", **how)
        assert result.returncode == 1, result
        assert result.stderr.startswith(f"hookql: error: {expected}") and result.stderr.count("\n") == 1, result
    bad_status = await hookql(served, "webhooks", "events", "V2ViaG9vazox", "--status", "lost")
    assert bad_status.returncode == 1 and "no event status 'lost'" in bad_status.stderr
    assert "traceback" not in served.serve.log_since(0).lower()
