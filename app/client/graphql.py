"""A small GraphQL client for hookql's API: queries and mutations over HTTP, subscriptions over
the websocket (graphql-transport-ws). Every failure a user can meet — an unreachable server, a
refused key, an error in the answer — is a ClientError with a one-line message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

DEFAULT_URL = "http://127.0.0.1:8000"
REQUEST_TIMEOUT_S = 60.0  # a webhookTest waits for the receiver (up to 30 s) and records the attempt
WS_ACK_TIMEOUT_S = 10.0  # the server answers connection_init at once, or closes
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # the server's own answers are at most 5 MiB by default
FORBIDDEN_CODE = 4403  # graphql-transport-ws: connection_init refused (a bad key)


class ClientError(Exception):
    """Something the user must fix or know: printed as one line, non-zero exit."""


class ServerUnreachable(ClientError):
    """No answer from the server (not running, restarting, the network down): may pass."""


class SubscriptionLost(ClientError):
    """The websocket went away (the server stopped, the network failed): worth connecting again."""


def endpoint(base_url: str) -> str:
    """`http://host:8000` (or `…/graphql`) → the GraphQL endpoint URL; ClientError if not a URL."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"not a server URL: {base_url!r} (give --url http://HOST:PORT or set HOOKQL_URL)")
    path = parts.path.rstrip("/")
    if not path.endswith("/graphql"):
        path += "/graphql"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", "unknown error"))
    return "unknown error"


class GraphQLClient:
    """One server, one API key; use as `async with GraphQLClient(url, key) as client`."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.url = endpoint(base_url)
        self.base_url = base_url
        if not api_key:
            raise ClientError("no API key: pass --api-key KEY or set HOOKQL_API_KEY (`hookql apikey create`)")
        self.api_key = api_key
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GraphQLClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use GraphQLClient as an async context manager"
        return self._session

    def _unreachable(self, exc: BaseException) -> ServerUnreachable:
        cause = getattr(exc, "os_error", None)
        if isinstance(cause, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = getattr(cause, "strerror", None) or str(exc) or type(exc).__name__
        return ServerUnreachable(
            f"cannot reach the hookql server at {self.base_url}: {reason}"
            " (is `hookql serve` running? --url / HOOKQL_URL)"
        )

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of the answer; ClientError for a transport, key or GraphQL error."""
        try:
            async with self.session.post(
                self.url,
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"},
            ) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES)
                status = resp.status
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise self._unreachable(exc) from None
        except TimeoutError:
            raise ServerUnreachable(
                f"the hookql server at {self.base_url} did not answer within {REQUEST_TIMEOUT_S:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ClientError(f"talking to the hookql server at {self.base_url} failed: {exc}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ClientError(f"{self.url} answered HTTP {status} with something other than GraphQL JSON") from None
        if not isinstance(answer, dict):
            raise ClientError(f"{self.url} answered HTTP {status} with something other than GraphQL JSON")
        if status == 401:
            raise ClientError(f"the server refused the API key: {_first_message(answer.get('errors'))}"
                              " (--api-key / HOOKQL_API_KEY)")
        if answer.get("errors"):
            raise ClientError(f"the server answered: {_first_message(answer['errors'])}")
        if status != 200 or not isinstance(answer.get("data"), dict):
            raise ClientError(f"the server answered HTTP {status}")
        data: dict[str, Any] = answer["data"]
        return data

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Each `data` a subscription sends. ClientError for a refused key or a GraphQL error;
        SubscriptionLost when the connection goes away."""
        parts = urlsplit(self.url)
        ws_url = urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, "", ""))
        try:
            ws = await self.session.ws_connect(ws_url, protocols=("graphql-transport-ws",))
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise self._unreachable(exc) from None
        except aiohttp.WSServerHandshakeError as exc:
            raise ClientError(f"the server refused the websocket: HTTP {exc.status}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SubscriptionLost(f"cannot open the websocket at {ws_url}: {exc or type(exc).__name__}") from None
        try:
            await ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.api_key}"}})
            try:
                ack = await ws.receive(timeout=WS_ACK_TIMEOUT_S)
            except TimeoutError:
                raise SubscriptionLost("the server did not acknowledge the websocket connection") from None
            if ack.type != aiohttp.WSMsgType.TEXT or json.loads(ack.data).get("type") != "connection_ack":
                code = ack.data if ack.type == aiohttp.WSMsgType.CLOSE else ws.close_code
                if code == FORBIDDEN_CODE:
                    raise ClientError("the server refused the API key (--api-key / HOOKQL_API_KEY)")
                raise SubscriptionLost(f"the server refused the websocket connection (code {code})")
            subscribe = {"type": "subscribe", "id": "1", "payload": {"query": query, "variables": variables or {}}}
            await ws.send_json(subscribe)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(msg.data)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send_json({"type": "pong"})
                elif kind == "next":
                    payload = message.get("payload") or {}
                    if payload.get("errors"):
                        raise ClientError(f"the server answered: {_first_message(payload['errors'])}")
                    yield payload.get("data") or {}
                elif kind == "error":
                    raise ClientError(f"the server answered: {_first_message(message.get('payload'))}")
                elif kind == "complete":
                    return
            if ws.close_code == FORBIDDEN_CODE:
                raise ClientError("the server refused the API key (--api-key / HOOKQL_API_KEY)")
            raise SubscriptionLost(f"the server closed the websocket (code {ws.close_code})")
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            raise SubscriptionLost(f"the websocket failed: {exc}") from None
        finally:
            await asyncio.shield(ws.close())
