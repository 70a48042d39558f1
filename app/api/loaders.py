"""The API's reads of the marketplace, batched and cached behind per-request DataLoaders.

The statements, and the visibility they enforce, are `app.store.marketplace`'s: each loader
runs one of them per batch, for the viewer's seller (None for the operator).

An API request's set runs at most `max_statements` of them at once. The pool hands out its
connections first come, first served: a request of hundreds of aliased pages queued hundreds of
statements at once, and every other request's statements (its key's lookup too) waited behind
all of them, seconds, until the costly request ended or met its deadline. Queued on their own
request's slots instead, they leave the rest of the pool to the others."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from strawberry.dataloader import DataLoader

from app.store import marketplace
from app.store.dashboard import WebhookHealth, webhooks_health_of
from app.types import Visibility

V = TypeVar("V")


class _OnDemand(dict[str, V]):
    """Loaders made on first use: the engine makes a set per batch and visibility, and a query
    touches a few of the tables; making all of them up front was a visible share of its CPU."""

    def __init__(self, names: Iterable[str], make: Callable[[str], V]) -> None:
        super().__init__()
        self._names = frozenset(names)
        self._make = make

    def __missing__(self, name: str) -> V:
        if name not in self._names:
            raise KeyError(name)
        loader = self[name] = self._make(name)
        return loader


@dataclass
class Loaders:
    """One set per request (or per engine batch and visibility): batching and caching live here."""

    pool: asyncpg.Pool
    visibility: Visibility
    max_statements: int | None = None  # of this set's statements at once (None: as many as the pool has)
    statements: int = 0  # SQL statements run through this set: every read of the API goes via _fetch
    by_id: dict[str, DataLoader[int, asyncpg.Record | None]] = field(init=False)
    children: dict[str, DataLoader[int, list[asyncpg.Record]]] = field(init=False)
    # A webhook's health figures (backlog, last attempt, 24 h success): the dashboard's statement,
    # once for every webhook a response shows.
    webhook_health: DataLoader[int, WebhookHealth | None] = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_statements) if self.max_statements else None
        self.by_id = _OnDemand(marketplace.TABLES, lambda t: DataLoader(load_fn=self._by_id_loader(t)))
        self.children = _OnDemand(marketplace.CHILDREN, lambda link: DataLoader(load_fn=self._children_loader(link)))
        self.webhook_health = DataLoader(load_fn=self._load_webhook_health)

    async def _load_webhook_health(self, ids: Sequence[int]) -> list[WebhookHealth | None]:
        self.statements += 1
        async with self._slot(), self.pool.acquire() as conn:
            found = await webhooks_health_of(conn, self.visibility.seller_id, list(ids))
        return [found.get(i) for i in ids]

    def _by_id_loader(self, table: str):  # type: ignore[no-untyped-def]
        query = marketplace.by_id(table)

        async def load(ids: Sequence[int]) -> list[asyncpg.Record | None]:
            rows = await self._fetch(*query(ids=list(ids), seller_id=self.visibility.seller_id))
            found = {r["id"]: r for r in rows}
            return [found.get(i) for i in ids]

        return load

    def _children_loader(self, link: str):  # type: ignore[no-untyped-def]
        table, fk = marketplace.CHILDREN[link]
        query = marketplace.children(link)
        by_seller = "seller_id" in query.params

        async def load(parent_ids: Sequence[int]) -> list[list[asyncpg.Record]]:
            values: dict[str, object] = {"parent_ids": list(parent_ids)}
            if by_seller:
                values["seller_id"] = self.visibility.seller_id
            grouped: dict[int, list[asyncpg.Record]] = defaultdict(list)
            for row in await self._fetch(*query(**values)):
                grouped[row[fk]].append(row)
            self._prime(table, [r for rows in grouped.values() for r in rows])
            return [grouped.get(p, []) for p in parent_ids]

        return load

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        self.statements += 1
        async with self._slot():
            return list(await self.pool.fetch(sql, *args))

    def _slot(self) -> AbstractAsyncContextManager[object]:
        return self._slots if self._slots is not None else contextlib.nullcontext()

    async def page(self, table: str, after_id: int, limit: int) -> list[asyncpg.Record]:
        query = marketplace.page(table)
        rows = await self._fetch(*query(after_id=after_id, seller_id=self.visibility.seller_id, limit=limit))
        self._prime(table, rows)
        return rows

    def _prime(self, table: str, rows: list[asyncpg.Record]) -> None:
        """Rows already fetched answer later by-id lookups (a line item's invoice, a shipment
        item's line item) without another statement. Children of a visible parent are visible."""
        if table in marketplace.TABLES:
            loader = self.by_id[table]
            for row in rows:
                loader.prime(row["id"], row)
