"""/graphql over HTTP and websockets: bearer-key authentication, GraphiQL, JSON errors."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from app.api.context import Context, make_context
from app.api.schema import schema
from app.api.subscriptions import KeySubscriptions, SubscriptionQuota
from app.api.ws_protocols import LegacyWSHandler, TransportWSHandler, WebSocketAdapter
from app.apikeys import authenticate, hash_key
from app.config import Settings

MAX_BODY_BYTES = 1024 * 1024  # a GraphQL request is text: 1 MiB is far beyond any real query


class _BodyTooLarge(Exception):
    pass


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="hookql"'} if status == 401 else None
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


class HookqlGraphQL(GraphQL[Context, None]):
    """strawberry's ASGI view with hookql's authentication and JSON error bodies."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = WebSocketAdapter

    def __init__(self, pool: asyncpg.Pool, settings: Settings, extras: dict[str, Any]) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            keep_alive=True,
            keep_alive_interval=15,
            # Both subprotocols: a websocket that has not authenticated by then is closed.
            connection_init_wait_timeout=timedelta(seconds=settings.ws_auth_timeout_s),
        )
        self.pool = pool
        self.settings = settings
        self.extras = extras
        self.subscription_quota = SubscriptionQuota(settings.key_max_subscriptions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        if (
            request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        ):
            await (await self.render_graphql_ide(request))(scope, receive, send)  # GraphiQL needs no key
            return
        response: Response
        key = _bearer(request.headers.get("authorization"))
        visibility = await authenticate(self.pool, key) if key else None
        if visibility is None:
            message = "missing API key: send `Authorization: Bearer <key>`" if key is None else "invalid API key"
            response = _error(401, message)
        elif _declared_length(request) > MAX_BODY_BYTES:
            response = _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        else:
            scope.setdefault("state", {})["visibility"] = visibility
            try:
                response = await self.run(Request(scope, _limited(receive, MAX_BODY_BYTES)))
            except HTTPException as exc:
                response = _error(exc.status_code, exc.reason)
            except _BodyTooLarge:  # chunked bodies declare no length: counted while read
                response = _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
            if response.status_code >= 400 and response.headers.get("content-type", "").startswith("text/plain"):
                response = _error(response.status_code, bytes(response.body).decode())
            elif response.status_code == 200 and _not_executed(_body(response)):
                response.status_code = 400
        await response(scope, receive, send)

    def parse_json(self, data: str | bytes) -> Any:
        # strawberry assumes an object (or a batch list) and fails with a 500 on `5` or `"x"`.
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "expected a JSON object")
        return parsed

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        visibility = request.scope.get("state", {}).get("visibility")
        context = make_context(self.pool, visibility, self.settings, **self.extras)
        context.request, context.response = request, response
        return context

    async def on_ws_connect(self, context: Context) -> Any:
        params = context.connection_params or {}
        raw = params.get("Authorization") or params.get("authorization")
        key = _bearer(raw if isinstance(raw, str) else None)
        if key is None and context.request is not None:
            key = _bearer(context.request.headers.get("authorization"))
        visibility = await authenticate(self.pool, key) if key else None
        if key is None or visibility is None:
            raise ConnectionRejectionError({"message": "missing or invalid API key"})
        context.authenticate_as(visibility)
        # This connection's subscriptions count against its key (and only websockets run them).
        context.subscriptions = KeySubscriptions(self.subscription_quota, hash_key(key))
        return await super().on_ws_connect(context)

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0  # uvicorn refuses a malformed Content-Length before we see it


def _limited(receive: Receive, max_bytes: int) -> Receive:
    """`receive` that raises _BodyTooLarge once the body exceeds max_bytes, so an undeclared
    (chunked) body is never buffered whole."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > max_bytes:
            raise _BodyTooLarge
        return message

    return limited


def _not_executed(body: bytes) -> bool:
    """The document did not parse or validate, or its variables did not coerce: `data` is null
    and no error carries a `path` (errors raised while executing a field always do). That is a
    bad request; a failed resolver is an ordinary GraphQL result with 200."""
    if not body.startswith(b'{"data":null,"errors":'):
        return False
    return not any("path" in error for error in json.loads(body)["errors"])


def _body(response: Response) -> bytes:
    return bytes(getattr(response, "body", b""))  # streamed responses (subscriptions over HTTP) have none


def graphql_app(pool: asyncpg.Pool, settings: Settings, **extras: Any) -> HookqlGraphQL:
    return HookqlGraphQL(pool, settings, extras)
