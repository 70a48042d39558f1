"""strawberry's two GraphQL websocket subprotocols, made strict for hookql.

- Both close a connection that has not authenticated within the view's
  `connection_init_wait_timeout` (`HOOKQL_WS_AUTH_TIMEOUT_S`) with 4408. strawberry's
  graphql-transport-ws handler has that timer; its graphql-ws (the older protocol) handler has none,
  so it is added here, with the 4429 that graphql-transport-ws gives a second `connection_init`
  (one connection, one key: its subscriptions are counted against that key).
- Both refuse a malformed message (not an object, an unknown `type`, an operation without an
  `id` or a `query` string) by closing with 4400 and a reason, where strawberry would raise
  inside its handler and log a traceback for the client's mistake (or, on graphql-ws, ignore it).
- A close reason is cut to the 123 bytes a close frame holds: strawberry puts client text in some
  (a syntax error, an unknown operation name) and the websocket library refuses a longer one.

Operations before `connection_init` is acknowledged are refused by strawberry itself (4401)."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.api.context import Context

MAX_OPERATION_ID_LENGTH = 128  # clients use counters or UUIDs
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload, less the 2-byte code
AUTH_TIMEOUT_CODE = 4408  # graphql-transport-ws's "Connection initialisation timeout"
INVALID_MESSAGE_CODE = 4400

TRANSPORT_WS_TYPES = frozenset({"connection_init", "ping", "pong", "subscribe", "complete"})
LEGACY_WS_TYPES = frozenset({"connection_init", "connection_terminate", "start", "stop"})
_WITH_ID = frozenset({"subscribe", "complete", "start", "stop"})
_WITH_OPERATION = frozenset({"subscribe", "start"})  # graphql-transport-ws, graphql-ws


def message_problem(message: object, types: frozenset[str]) -> str | None:
    """Why `message` is not a well-formed message of the protocol whose message `types` are
    given, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string `type`"
    kind = message["type"]
    if kind not in types:
        return "unknown message type"  # not echoed: it may be anything
    if kind in _WITH_ID:
        id_ = message.get("id")
        if not isinstance(id_, str) or not 0 < len(id_) <= MAX_OPERATION_ID_LENGTH:
            return f"`{kind}` needs an `id` string of 1-{MAX_OPERATION_ID_LENGTH} characters"
    if kind in _WITH_OPERATION:
        payload: Any = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return f"`{kind}` needs a `payload` object with a `query` string"
        if not isinstance(payload.get("variables", {}) or {}, dict):
            return "`variables` must be an object"
        if not isinstance(payload.get("operationName", "") or "", str):
            return "`operationName` must be a string"
    return None


class WebSocketAdapter(ASGIWebSocketAdapter):
    """strawberry's websocket adapter, with close reasons that always fit a close frame."""

    async def close(self, code: int, reason: str) -> None:
        fitted = reason.encode("utf-8", "replace")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
        await super().close(code, fitted)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws; strawberry already closes it when `connection_init` is late."""

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, TRANSPORT_WS_TYPES)
        if problem:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws, with an authentication deadline and a single `connection_init`."""

    connection_init_received = False

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_authenticated())
        try:
            await super().handle()
        finally:
            deadline.cancel()
            with suppress(asyncio.CancelledError):
                await deadline

    async def _close_unless_authenticated(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.connection_acknowledged:
            with suppress(RuntimeError, WebSocketDisconnect):  # the client may be gone already
                await self.websocket.close(code=AUTH_TIMEOUT_CODE, reason="Connection initialisation timeout")

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, LEGACY_WS_TYPES)
        if problem:
            await self.websocket.close(code=INVALID_MESSAGE_CODE, reason=problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        await super().handle_connection_init(message)
