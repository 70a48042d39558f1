"""The client commands' part of the `hookql` command line: `webhooks …` and `listen`. They take
`--url`/HOOKQL_URL (default http://127.0.0.1:8000) and `--api-key`/HOOKQL_API_KEY; a failure
is one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from app import runtime
from app.client import webhooks
from app.client.graphql import DEFAULT_URL, ClientError, GraphQLClient
from app.client.listen import ListenOptions, listen

COMMANDS = frozenset({"webhooks", "listen"})
TYPES = ("INVOICE", "VARIANT", "REFUND_REQUEST")
ACTIONS = ("CREATED", "UPDATED", "DELETED")


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the hookql server (HOOKQL_URL, default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="an API key (HOOKQL_API_KEY)")


def _type(text: str) -> str:
    """`invoice`, `Invoice`, `RefundRequest`, `refund-request` → the GraphQL enum value."""
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text.strip()).replace("-", "_").upper()
    if name not in TYPES:
        raise argparse.ArgumentTypeError(f"not a webhook type: {text!r} (use one of {', '.join(TYPES)})")
    return name


def _events(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ACTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"events are a comma-separated list of {', '.join(ACTIONS)}, got {text!r}")
    return names


def _first(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1-100: {text!r}")
    return value


def add_commands(commands: Any) -> None:
    """Register `webhooks` and `listen` on the `hookql` parser's subcommands."""
    hooks = commands.add_parser("webhooks", help="a running server's webhooks: list | show | test | events")
    actions = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "your webhooks, with their health"),
        ("show", "one webhook in full"),
        ("test", "send a signed ping now and show the answer"),
        ("events", "a webhook's events, newest first"),
    ):
        action = actions.add_parser(name, help=help_text)
        if name != "list":
            action.add_argument("id", metavar="ID", help="the webhook's ID (as `webhooks list` shows it)")
        if name == "events":
            action.add_argument("--status", help="only events of this status (PENDING, FAILED, DELIVERED …)")
            action.add_argument("--first", type=_first, default=20, help="how many (1-100, default 20)")
        action.add_argument("--json", action="store_true", help="the API's answer as JSON")
        _server_flags(action)

    listen_cmd = commands.add_parser(
        "listen", help="forward a webhook's deliveries to a local URL (like `stripe listen`)"
    )
    listen_cmd.add_argument("--forward-to", required=True, metavar="URL", help="the local URL to POST deliveries to")
    which = listen_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--webhook", metavar="ID", help="take an existing webhook's deliveries")
    which.add_argument("--type", type=_type, help="a temporary webhook of this type: INVOICE, VARIANT, REFUND_REQUEST")
    listen_cmd.add_argument("--query", help="the temporary webhook's query (default: the entity's id)")
    listen_cmd.add_argument("--events", type=_events, help="the temporary webhook's events, e.g. created,updated")
    listen_cmd.add_argument("--timeout-seconds", type=int, help="the temporary webhook's timeout (1-30, default 15)")
    _server_flags(listen_cmd)


def _client(args: argparse.Namespace) -> GraphQLClient:
    url = args.url or os.environ.get("HOOKQL_URL") or DEFAULT_URL
    return GraphQLClient(url, args.api_key or os.environ.get("HOOKQL_API_KEY"))


async def _webhooks(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        ok = True
        if args.webhooks_command == "list":
            text = await webhooks.list_webhooks(client, as_json=args.json)
        elif args.webhooks_command == "show":
            text = await webhooks.show_webhook(client, args.id, as_json=args.json)
        elif args.webhooks_command == "events":
            text = await webhooks.webhook_events(client, args.id, status=args.status, first=args.first,
                                                 as_json=args.json)
        else:
            text, ok = await webhooks.test_webhook(client, args.id, as_json=args.json)
    print(text)
    return 0 if ok else 1


async def _listen(args: argparse.Namespace) -> int:
    if args.webhook is not None and (args.query or args.events or args.timeout_seconds is not None):
        raise ClientError("--query, --events and --timeout-seconds shape a temporary webhook: not with --webhook")
    options = ListenOptions(
        forward_to=args.forward_to,
        webhook_id=args.webhook,
        type=args.type,
        query=args.query,
        events=args.events,
        timeout_seconds=args.timeout_seconds,
    )
    signals = runtime.StopSignals().install()
    async with _client(args) as client:
        await listen(client, options, signals.stop)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a client command; its exit status."""
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = (
        _listen if args.command == "listen" else _webhooks
    )
    try:
        return runtime.run(command(args))
    except ClientError as exc:
        print(f"hookql: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
