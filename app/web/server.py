"""The Starlette application of `hookql serve`: the GraphQL API at /graphql (GraphiQL, with its
assets under /graphiql/), /healthz and /metrics, and the uvicorn server that runs it. The CLI owns
the database pool, the transport (the API's own, for `webhookTest`) and the engine process; this
module only routes and serves."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute

from app.api.asgi import graphql_app
from app.config import Settings
from app.store import db
from app.transport.http import Transport
from app.web.dashboard import dashboard_app
from app.web.graphiql import graphiql_page, graphiql_routes
from app.web.metrics import render_metrics

HEALTH_TIMEOUT_S = 2.0


def create_app(settings: Settings, pool: asyncpg.Pool, transport: Transport) -> Starlette:
    async def healthz(request: Request) -> Response:
        try:
            async with pool.acquire(timeout=HEALTH_TIMEOUT_S) as conn:
                await db.ping(conn, HEALTH_TIMEOUT_S)
        except Exception as exc:  # whatever stops the database answering makes us unhealthy
            return JSONResponse({"status": "unavailable", "error": str(exc) or type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        body, content_type = await render_metrics(pool, max_webhooks=settings.metrics_max_webhooks)
        return Response(body, media_type=content_type)

    gql = graphql_app(pool, settings, ide=graphiql_page, transport=transport)
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            # Two routes, not a Mount: a Mount matches only `/graphql/…`; websockets use `/graphql`.
            Route("/graphql", gql),
            WebSocketRoute("/graphql", gql),
            Mount("/dashboard", dashboard_app(pool, settings)),
            *graphiql_routes(),
        ]
    )


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI's handlers (app.runtime.StopSignals)
    decide when it stops, by `should_exit` and `force_exit`. uvicorn's `capture_signals` would
    re-raise the signal once `serve()` returns, killing the process (exit 143) before the
    engine is drained, the pool closed and the embedded PostgreSQL stopped."""

    def __init__(self, app: Starlette, settings: Settings) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                lifespan="off",
                # uvicorn is a library: warning and above, as every logger that is not hookql's
                # (app.cli.configure_logging); `--log-level info` shows hookql's own lines.
                log_level="error" if settings.log_level == "error" else "warning",
                access_log=False,
                # Requests under way get this long to finish once stopping; websockets are closed.
                timeout_graceful_shutdown=settings.shutdown_timeout_s,
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), for `ApiServer.serve(sockets=...)`: bound before
    anything else starts, so a busy port is one clear error. Raises OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if hasattr(socket, "SO_REUSEADDR") and sys.platform != "win32":  # as uvicorn: restart despite TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
