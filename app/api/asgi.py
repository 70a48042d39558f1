"""/graphql over HTTP and websockets: bearer-key authentication, GraphiQL, JSON errors.

GET /graphql from a browser (Accept: text/html, no `query`) answers with the page of the `ide`
given to `graphql_app` (hookql serve gives app.web.graphiql's, which needs no CDN); without one,
such a request is an ordinary GraphQL request and needs a key.

An HTTP request meets its key's quotas (app.policy.quotas) twice: before the key is looked up, a
key this process knows to be over its rate, its requests running or its cost budget is refused
at once (429 with Retry-After; no database round trip, body unread), so a client hammering past
its Retry-After costs the loop and the pool almost nothing; after authentication the request is
admitted or refused the same way. It then reads its body (at most MAX_BODY_BYTES) and runs
under `request_timeout_ms`: past the deadline, or once the client disconnects, the execution is
cancelled (its SQL with it) and the answer is a 503 naming the deadline, or nothing. The
executor checks the deadline too (app.api.deadline): an execution that keeps the event loop busy
is cancelled at the deadline, not when the loop next gets to this view's timer. A document its
key's cost bucket cannot pay for is refused with 429, THROTTLED and Retry-After
(app.api.cost_limit). An answer larger than `max_response_bytes` is replaced by an error saying
so."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
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
from app.api.cost_limit import KeyBudget
from app.api.deadline import Deadline, cancel_execution
from app.api.schema import schema
from app.api.subscriptions import KeySubscriptions, SubscriptionQuota
from app.api.ws_protocols import LegacyWSHandler, TransportWSHandler, WebSocketAdapter
from app.config import Settings
from app.policy.quotas import KeyQuotas, Refusal, cost_bucket_for
from app.store.apikeys import authenticate, hash_key
from app.types import Visibility

MAX_BODY_BYTES = 1024 * 1024  # a GraphQL request is text: 1 MiB is far beyond any real query
# A cancelled execution gets this long to unwind (cancel its SQL) before the answer; one the
# executor cancelled (busy with thousands of tasks, not waiting on SQL) is answered at once.
CANCEL_GRACE_S = 1.0
# One request's marketplace reads at once (app.api.loaders): a fifth of `hookql serve`'s pool of 20,
# so that one request's fan-out leaves connections to every other request.
REQUEST_MAX_STATEMENTS = 4

log = logging.getLogger("hookql.api")


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="hookql"'}
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["extensions"] = {"code": code}
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


class HookqlGraphQL(GraphQL[Context, None]):
    """strawberry's ASGI view with hookql's authentication and JSON error bodies."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = WebSocketAdapter

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        extras: dict[str, Any],
        ide: Callable[[Request], Awaitable[Response]] | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,  # strawberry's own pages load their scripts from a CDN: see `ide`
            keep_alive=True,
            keep_alive_interval=15,
            # Both subprotocols: a websocket that has not authenticated by then is closed.
            connection_init_wait_timeout=timedelta(seconds=settings.ws_auth_timeout_s),
        )
        self.pool = pool
        self.settings = settings
        self.extras = extras
        self.ide = ide
        self.quotas: KeyQuotas[bytes] = KeyQuotas(settings.key_requests_per_s, settings.key_max_concurrent_requests)
        self.subscription_quota = SubscriptionQuota(settings.key_max_subscriptions)
        self._lookups: dict[bytes, asyncio.Future[Visibility | None]] = {}  # key lookups under way

    async def _authenticate(self, key: str, key_id: bytes) -> Visibility | None:
        """The key's visibility, looked up once for all of the key's requests that arrive while a
        lookup is under way: a burst of one key's requests takes one pool connection, not one
        each, and leaves the rest of the pool to other keys and /healthz."""
        lookup = self._lookups.get(key_id)
        if lookup is None:
            lookup = self._lookups[key_id] = asyncio.ensure_future(authenticate(self.pool, key))
            lookup.add_done_callback(lambda _: self._lookups.pop(key_id, None))
            lookup.add_done_callback(_retrieve)  # its error is raised to the requests that wait for it
        return await asyncio.shield(lookup)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        if (
            self.ide is not None
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        ):
            await (await self.ide(request))(scope, receive, send)  # GraphiQL needs no key
            return
        key = _bearer(request.headers.get("authorization"))
        if key is None:
            await _error(401, "missing API key: send `Authorization: Bearer <key>`")(scope, receive, send)
            return
        key_id = hash_key(key)
        refusal = self.quotas.refuse_early(key_id, time.monotonic())
        if refusal is not None:
            await _refused(refusal)(scope, receive, send)
            return
        visibility = await self._authenticate(key, key_id)
        if visibility is None:
            await _error(401, "invalid API key")(scope, receive, send)
            return
        if _declared_length(request) > MAX_BODY_BYTES:
            await _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")(scope, receive, send)
            return
        bucket = cost_bucket_for(self.settings, operator=visibility.is_operator)
        refusal = self.quotas.admit(key_id, time.monotonic(), bucket)
        if refusal is not None:
            await _refused(refusal)(scope, receive, send)
            return
        try:
            budget = KeyBudget(self.quotas, key_id, bucket)
            response = await self._execute(scope, receive, visibility, budget)
            if response is not None:  # None: the client has gone
                await response(scope, receive, send)  # a streamed subscription holds its slot while it runs
        finally:
            self.quotas.release(key_id)

    async def _execute(
        self, scope: Scope, receive: Receive, visibility: Visibility, budget: KeyBudget
    ) -> Response | None:
        """Read the body and run the request under the deadline; None once the client has gone."""
        timeout_ms = self.settings.request_timeout_ms
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        try:
            async with asyncio.timeout_at(deadline):
                body = await _read_body(receive, MAX_BODY_BYTES)
        except TimeoutError:
            return _error(408, f"the request body did not arrive within the {timeout_ms} ms deadline")
        except _BodyTooLarge:  # chunked bodies declare no length: counted while read
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        except _ClientGone:
            return None
        state = scope.setdefault("state", {})
        state["visibility"] = visibility
        state["budget"] = budget
        state["deadline"] = request_deadline = Deadline(deadline)
        # The body is read whole, so from here `receive` only reports the client going away.
        work = asyncio.ensure_future(self.run(Request(scope, _replay(body))))
        request_deadline.runs(work)
        gone = asyncio.ensure_future(_disconnected(receive))
        client_gone = False
        try:
            # Until the work is done, the client is gone, or the deadline has passed: as it now
            # stands (a resolver may move it later: webhookTest waits for its receiver), or as the
            # executor finds it (Deadline.expire: the execution is cancelled already).
            while not (work.done() or gone.done() or request_deadline.expired):
                if request_deadline.at <= asyncio.get_running_loop().time():
                    break
                await request_deadline.wait(work, gone)
            client_gone = gone.done() and not work.done()
        finally:
            gone.cancel()
            if not work.done():
                cancel_execution(work)
                work.add_done_callback(_retrieve)  # an error while unwinding is not "never retrieved"
                if not request_deadline.expired:  # expired: answered at once, while its tasks unwind
                    await asyncio.wait({work}, timeout=CANCEL_GRACE_S)
        if not work.done() or work.cancelled():
            who = "operator" if visibility.is_operator else f"seller {visibility.seller_id}"
            if client_gone:
                log.info("GraphQL request of %s cancelled: the client disconnected", who)
                return None
            log.warning("GraphQL request of %s cancelled at its %d ms deadline", who, timeout_ms)
            return _error(
                503,
                f"the request did not finish within its {timeout_ms:,} ms deadline (request_timeout_ms) "
                "and was cancelled; ask for less (smaller pages, fewer nested lists)",
                "DEADLINE_EXCEEDED",
            )
        try:
            response = work.result()
        except HTTPException as exc:
            return _error(exc.status_code, exc.reason)
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith("text/plain"):
            return _error(response.status_code, bytes(response.body).decode())
        size = len(_body(response))
        if size > self.settings.max_response_bytes:
            log.warning("GraphQL response of %d bytes refused (max_response_bytes)", size)
            return _error(
                400,
                f"the response is {size:,} bytes, over the limit of {self.settings.max_response_bytes:,} "
                "(max_response_bytes); ask for less (smaller pages, fewer fields)",
                "RESPONSE_TOO_LARGE",
            )
        if budget.throttled is not None:  # the document was refused before it ran: its body says why
            response.status_code = 429
            response.headers["Retry-After"] = str(budget.throttled.retry_after_s)
        elif response.status_code == 200 and _not_executed(_body(response)):
            response.status_code = 400
        return response

    def parse_json(self, data: str | bytes) -> Any:
        # strawberry assumes an object (or a batch list) and fails with a 500 on `5` or `"x"`.
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "expected a JSON object")
        return parsed

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state = request.scope.get("state", {})
        context = make_context(
            self.pool, state.get("visibility"), self.settings, max_statements=REQUEST_MAX_STATEMENTS, **self.extras
        )
        context.request, context.response = request, response
        context.budget = state.get("budget")
        context.deadline = state.get("deadline")
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
        # Queries and mutations sent over the websocket pay from the same bucket as over HTTP.
        bucket = cost_bucket_for(self.settings, operator=visibility.is_operator)
        context.budget = KeyBudget(self.quotas, hash_key(key), bucket)
        return await super().on_ws_connect(context)

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))


def _refused(refusal: Refusal) -> JSONResponse:
    return _error(429, refusal.message, refusal.code, {"Retry-After": str(refusal.retry_after_s)})


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0  # uvicorn refuses a malformed Content-Length before we see it


async def _read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; _BodyTooLarge as soon as it exceeds max_bytes, so an undeclared
    (chunked) body is never buffered whole."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """`receive` for a request whose body was read already: the body, then nothing more."""
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    return receive


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (the server reports it after the body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _not_executed(body: bytes) -> bool:
    """The document did not parse or validate, or its variables did not coerce: `data` is null
    and no error carries a `path` (errors raised while executing a field always do). That is a
    bad request; a failed resolver is an ordinary GraphQL result with 200."""
    if not body.startswith(b'{"data":null,"errors":'):
        return False
    return not any("path" in error for error in json.loads(body)["errors"])


def _body(response: Response) -> bytes:
    return bytes(getattr(response, "body", b""))  # streamed responses (subscriptions over HTTP) have none


def graphql_app(
    pool: asyncpg.Pool,
    settings: Settings,
    ide: Callable[[Request], Awaitable[Response]] | None = None,
    **extras: Any,
) -> HookqlGraphQL:
    """The /graphql view; `ide` renders the page a browser gets at GET /graphql (none: no page)."""
    return HookqlGraphQL(pool, settings, extras, ide)
