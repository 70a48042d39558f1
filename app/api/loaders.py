"""Every SQL statement of the API's read side, behind per-request DataLoaders.

Visibility is enforced here, in SQL: for a seller, every by-id lookup joins up to the row's
seller, so a foreign row is simply not found. Children are loaded by their parent's id and are
visible exactly when the (already visible) parent is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from strawberry.dataloader import DataLoader

from app.types import Visibility

# table -> (FROM clause with alias t, the expression naming the row's seller)
_OWNERSHIP: dict[str, tuple[str, str]] = {
    "sellers": ("sellers t", "t.id"),
    "products": ("products t", "t.seller_id"),
    "variants": ("variants t JOIN products p ON p.id = t.product_id", "p.seller_id"),
    "invoices": ("invoices t", "t.seller_id"),
    "invoice_line_items": ("invoice_line_items t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "shipments": ("shipments t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "shipment_items": (
        "shipment_items t JOIN shipments s ON s.id = t.shipment_id JOIN invoices i ON i.id = s.invoice_id",
        "i.seller_id",
    ),
    "invoice_amendments": ("invoice_amendments t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "refund_requests": ("refund_requests t JOIN invoices i ON i.id = t.invoice_id", "i.seller_id"),
    "refund_request_line_items": (
        "refund_request_line_items t JOIN refund_requests r ON r.id = t.refund_request_id "
        "JOIN invoices i ON i.id = r.invoice_id",
        "i.seller_id",
    ),
}
TABLES = (*_OWNERSHIP, "orders")


def _by_id_sql(table: str) -> str:
    if table == "orders":  # an order is a seller's when it holds one of the seller's invoices
        return (
            "SELECT t.* FROM orders t WHERE t.id = ANY($1::bigint[]) AND ($2::bigint IS NULL OR EXISTS "
            "(SELECT 1 FROM invoices i WHERE i.order_id = t.id AND i.seller_id = $2))"
        )
    source, seller = _OWNERSHIP[table]
    return f"SELECT t.* FROM {source} WHERE t.id = ANY($1::bigint[]) AND ($2::bigint IS NULL OR {seller} = $2)"


# (child table, foreign key) for children loaded by parent id, ordered by id
_CHILDREN = {
    "products_by_seller": ("products", "seller_id"),
    "variants_by_product": ("variants", "product_id"),
    "invoices_by_order": ("invoices", "order_id"),
    "line_items_by_invoice": ("invoice_line_items", "invoice_id"),
    "shipments_by_invoice": ("shipments", "invoice_id"),
    "shipment_items_by_shipment": ("shipment_items", "shipment_id"),
    "amendments_by_invoice": ("invoice_amendments", "invoice_id"),
    "refund_requests_by_invoice": ("refund_requests", "invoice_id"),
    "refund_lines_by_refund_request": ("refund_request_line_items", "refund_request_id"),
}


def page_sql(table: str) -> str:
    """Keyset page of a root list: ids after the cursor, visible to the viewer, one extra row to
    learn whether there is a next page."""
    source, seller = _OWNERSHIP[table]
    return f"SELECT t.* FROM {source} WHERE t.id > $1 AND ($2::bigint IS NULL OR {seller} = $2) ORDER BY t.id LIMIT $3"


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
    statements: int = 0  # SQL statements run through this set: every read of the API goes via _fetch
    by_id: dict[str, DataLoader[int, asyncpg.Record | None]] = field(init=False)
    children: dict[str, DataLoader[int, list[asyncpg.Record]]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = _OnDemand(TABLES, lambda t: DataLoader(load_fn=self._by_id_loader(t)))
        self.children = _OnDemand(_CHILDREN, lambda name: DataLoader(load_fn=self._children_loader(*_CHILDREN[name])))

    def _by_id_loader(self, table: str):  # type: ignore[no-untyped-def]
        sql = _by_id_sql(table)

        async def load(ids: Sequence[int]) -> list[asyncpg.Record | None]:
            rows = await self._fetch(sql, list(ids), self.visibility.seller_id)
            found = {r["id"]: r for r in rows}
            return [found.get(i) for i in ids]

        return load

    def _children_loader(self, table: str, fk: str):  # type: ignore[no-untyped-def]
        seller_filter = ""
        if table == "invoices":  # an order's invoices: a seller sees only its own
            seller_filter = " AND ($2::bigint IS NULL OR t.seller_id = $2)"
        sql = f"SELECT t.* FROM {table} t WHERE t.{fk} = ANY($1::bigint[]){seller_filter} ORDER BY t.id"

        async def load(parent_ids: Sequence[int]) -> list[list[asyncpg.Record]]:
            args: list[object] = [list(parent_ids)]
            if seller_filter:
                args.append(self.visibility.seller_id)
            grouped: dict[int, list[asyncpg.Record]] = defaultdict(list)
            for row in await self._fetch(sql, *args):
                grouped[row[fk]].append(row)
            self._prime(table, [r for rows in grouped.values() for r in rows])
            return [grouped.get(p, []) for p in parent_ids]

        return load

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        self.statements += 1
        return list(await self.pool.fetch(sql, *args))

    async def page(self, table: str, after_id: int, limit: int) -> list[asyncpg.Record]:
        rows = await self._fetch(page_sql(table), after_id, self.visibility.seller_id, limit)
        self._prime(table, rows)
        return rows

    def _prime(self, table: str, rows: list[asyncpg.Record]) -> None:
        """Rows already fetched answer later by-id lookups (a line item's invoice, a shipment
        item's line item) without another statement. Children of a visible parent are visible."""
        if table in TABLES:
            loader = self.by_id[table]
            for row in rows:
                loader.prime(row["id"], row)
