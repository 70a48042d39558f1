"""The per-request context every resolver sees: who is asking, the pool, and the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from strawberry.types import Info as _Info

from app.api.loaders import Loaders
from app.config import Settings
from app.transport.http import Transport
from app.types import Outgoing, SendResult, Visibility

if TYPE_CHECKING:
    from app.api.cost_limit import KeyBudget
    from app.api.deadline import Deadline
    from app.api.subscriptions import KeySubscriptions


class OneShotTransport(Transport):
    """The transport of a context made without the API's (the schema called in-process, as tests
    do; the engine's evaluation contexts, which never send): each `send` opens its own sessions
    and closes them after the one attempt. The server always passes the API's Transport."""

    async def send(self, out: Outgoing) -> SendResult:
        async with Transport() as transport:
            return await transport.send(out)


@dataclass
class Context:
    pool: asyncpg.Pool
    visibility: Visibility | None  # None until a websocket's connection_init authenticates
    settings: Settings
    loaders: Loaders
    transport: Transport  # sends webhookTest's pings: the API's own (app.web.server), or OneShotTransport
    extras: dict[str, Any] = field(default_factory=dict)
    connection_params: dict[str, Any] | None = None
    request: Any = None
    response: Any = None
    subscriptions: KeySubscriptions | None = None  # the key's open-subscription slots; the GraphQL view sets it
    budget: KeyBudget | None = None  # the key's cost bucket; the GraphQL view sets it (None: documents run free)
    deadline: Deadline | None = None  # an HTTP request's; the GraphQL view sets it (None: no deadline)

    @property
    def viewer(self) -> Visibility:
        """The caller's visibility; resolvers use this (never reached unauthenticated)."""
        if self.visibility is None:
            raise PermissionError("not authenticated")
        return self.visibility

    def authenticate_as(self, visibility: Visibility) -> None:
        self.visibility = visibility
        self.loaders = Loaders(self.pool, visibility, self.loaders.max_statements)


def make_context(
    pool: asyncpg.Pool,
    visibility: Visibility,
    settings: Settings | None = None,
    *,
    max_statements: int | None = None,
    **extras: Any,
) -> Context:
    """A context for one request — or, in the engine, one batch of entities evaluated with one
    visibility, so DataLoaders batch across all of them. `transport` (in `extras`) is the API's
    Transport; without one the context sends through a OneShotTransport. `max_statements`: of
    its loaders' statements at once (app.api.loaders; None: as many as the pool has)."""
    transport = extras.pop("transport", None) or OneShotTransport()
    return Context(
        pool=pool,
        visibility=visibility,
        settings=settings or Settings(),
        loaders=Loaders(pool, visibility, max_statements),
        transport=transport,
        extras=extras,
    )


Info = _Info[Context, None]
