"""`hookql webhooks list | show ID | test ID | events ID [--status S]`: a running server's webhooks,
their health and their events, as tables (or `--json`, the API's own answer)."""

from __future__ import annotations

import json
from typing import Any

from app.client.graphql import ClientError, GraphQLClient
from app.client.tables import fields, percent, table, when

EVENT_STATUSES = ("PENDING", "DELIVERED", "FAILED", "SKIPPED", "SUPERSEDED", "CANCELLED")

WEBHOOK_FIELDS = """
  id name url type enabled disabledReason listening temporary
  lastAttemptAt lastStatusCode successRate24h backlog
"""
LIST = f"query {{ webhooks {{ {WEBHOOK_FIELDS} }} }}"
SHOW = f"""query($id: ID!) {{ webhook(id: $id) {{ {WEBHOOK_FIELDS}
  legacyId query subscribedEvents method format headers {{ name value }} skipIdenticalPayloads
  maxAttempts timeoutSeconds concurrency sellerId createdAt updatedAt }} }}"""
EVENT_FIELDS = """id eventId event status sequence entityType entityId attemptCount nextAttemptAt changedAt
  createdAt finishedAt error attempts { attemptedAt statusCode durationMs error }"""
EVENTS = f"""query($id: ID!, $status: WebhookEventStatus, $first: Int) {{ webhook(id: $id) {{ id name
  events(status: $status, first: $first) {{ edges {{ node {{ {EVENT_FIELDS} }} }} }} }} }}"""
TEST = f"""mutation($id: ID!) {{ webhookTest(id: $id) {{
  event {{ {EVENT_FIELDS} }} attempt {{ attemptedAt statusCode durationMs error responseBody }}
  errors {{ field message }} }} }}"""


def not_found(id_: str) -> ClientError:
    return ClientError(f"webhook {id_} not found (or not visible to this API key)")


def state(hook: dict[str, Any]) -> str:
    if not hook["enabled"]:
        return "disabled"
    return "listening" if hook["listening"] else "enabled"


def last_answer(attempts: list[dict[str, Any]]) -> str:
    if not attempts:
        return "-"
    last = attempts[-1]
    return str(last["statusCode"]) if last["statusCode"] is not None else (last["error"] or "no answer")


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


async def list_webhooks(client: GraphQLClient, *, as_json: bool) -> str:
    hooks = (await client.execute(LIST))["webhooks"]
    if as_json:
        return _dump(hooks)
    if not hooks:
        return "no webhooks"
    return table(
        ["ID", "NAME", "TYPE", "STATE", "LAST ATTEMPT", "LAST STATUS", "SUCCESS 24H", "BACKLOG", "URL"],
        [
            [h["id"], h["name"], h["type"], state(h), when(h["lastAttemptAt"]), h["lastStatusCode"],
             percent(h["successRate24h"]), h["backlog"], h["url"]]
            for h in hooks
        ],
    )


async def show_webhook(client: GraphQLClient, id_: str, *, as_json: bool) -> str:
    hook = (await client.execute(SHOW, {"id": id_}))["webhook"]
    if hook is None:
        raise not_found(id_)
    if as_json:
        return _dump(hook)
    return fields([
        ("id", hook["id"]),
        ("name", hook["name"]),
        ("url", hook["url"]),
        ("type", hook["type"]),
        ("state", state(hook) + (" (temporary, `hookql listen`)" if hook["temporary"] else "")),
        ("disabled reason", hook["disabledReason"]),
        ("events", ", ".join(hook["subscribedEvents"])),
        ("method / format", f"{hook['method']} / {hook['format']}"),
        ("headers", ", ".join(h["name"] for h in hook["headers"]) or None),
        ("last attempt", when(hook["lastAttemptAt"])),
        ("last status", hook["lastStatusCode"]),
        ("success 24h", percent(hook["successRate24h"])),
        ("backlog", hook["backlog"]),
        ("max attempts", hook["maxAttempts"]),
        ("timeout", f"{hook['timeoutSeconds']} s"),
        ("concurrency", hook["concurrency"]),
        ("created", when(hook["createdAt"])),
        ("query", hook["query"]),
    ])


async def webhook_events(
    client: GraphQLClient, id_: str, *, status: str | None, first: int, as_json: bool
) -> str:
    variables: dict[str, Any] = {"id": id_, "first": first}
    if status is not None:
        if status.upper() not in EVENT_STATUSES:
            raise ClientError(f"no event status {status!r}: use one of {', '.join(EVENT_STATUSES)}")
        variables["status"] = status.upper()
    hook = (await client.execute(EVENTS, variables))["webhook"]
    if hook is None:
        raise not_found(id_)
    events = [edge["node"] for edge in hook["events"]["edges"]]
    if as_json:
        return _dump(events)
    if not events:
        return f"no {status.upper() + ' ' if status else ''}events for webhook {hook['id']}"
    return table(
        ["ID", "EVENT", "STATUS", "SEQ", "ATTEMPTS", "LAST ANSWER", "CHANGED", "NEXT ATTEMPT", "DELIVERY ID"],
        [
            [e["id"], e["event"], e["status"], e["sequence"], e["attemptCount"],
             e["error"] or last_answer(e["attempts"]), when(e["changedAt"]), when(e["nextAttemptAt"]), e["eventId"]]
            for e in events
        ],
    )


async def test_webhook(client: GraphQLClient, id_: str, *, as_json: bool) -> tuple[str, bool]:
    """The ping's outcome, and whether it was delivered (or handed to a listener)."""
    answer = (await client.execute(TEST, {"id": id_}))["webhookTest"]
    if answer["errors"]:
        message = answer["errors"][0]["message"]
        raise not_found(id_) if message == "webhook not found" else ClientError(message)
    event, attempt = answer["event"], answer["attempt"]
    ok = attempt is None or (attempt["statusCode"] is not None and 200 <= attempt["statusCode"] < 300)
    if as_json:
        return _dump(answer), ok
    if attempt is None:
        return f"ping {event['eventId']} queued: the webhook is held by `hookql listen`, which forwards it", ok
    outcome = str(attempt["statusCode"]) if attempt["statusCode"] is not None else attempt["error"]
    line = f"ping {event['eventId']}: {outcome} in {attempt['durationMs']} ms ({event['status']})"
    if not ok:
        line += "; a failed test disables the webhook: fix the receiver, then enable it again"
    return line, ok
