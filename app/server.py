"""The Starlette application of `hookql serve`: the GraphQL API at /graphql, /healthz and
/metrics. The CLI owns the database pool, the transport and the engine; this module only routes."""

from __future__ import annotations

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute

from app.api.asgi import graphql_app
from app.config import Settings
from app.dashboard import dashboard_app
from app.metrics import render_metrics
from app.transport import Transport

HEALTH_TIMEOUT_S = 2.0


def create_app(settings: Settings, pool: asyncpg.Pool, transport: Transport) -> Starlette:
    async def healthz(request: Request) -> Response:
        try:
            async with pool.acquire(timeout=HEALTH_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1", timeout=HEALTH_TIMEOUT_S)
        except Exception as exc:  # whatever stops the database answering makes us unhealthy
            return JSONResponse({"status": "unavailable", "error": str(exc) or type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        body, content_type = await render_metrics(pool)
        return Response(body, media_type=content_type)

    gql = graphql_app(pool, settings, transport=transport)
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            # Two routes, not a Mount: a Mount matches only `/graphql/…`; websockets use `/graphql`.
            Route("/graphql", gql),
            WebSocketRoute("/graphql", gql),
            Mount("/dashboard", dashboard_app(pool, settings)),
        ]
    )
