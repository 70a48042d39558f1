"""Root query fields for the marketplace: node lookups, the three webhook entities, lists."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry

from app.api.context import Info
from app.api.marketplace import CURRENCY_NODE_TYPES, NODE_TYPES
from app.api.marketplace.catalog import Variant
from app.api.marketplace.invoicing import Invoice, InvoiceAmendment, InvoiceLineItem
from app.api.marketplace.refunds import RefundRequest, RefundRequestLineItem
from app.api.node import Node
from app.api.pagination import Connection, Edge, PageInfo, check_first, decode_cursor, encode_cursor
from app.policy.ids import decode, decode_any

MAX_NODES = 100


async def resolve_node(info: Info, global_id: str) -> Node | None:
    parsed = decode_any(global_id)
    if parsed is None:
        return None
    type_name, id_ = parsed
    loaders = info.context.loaders
    if type_name in NODE_TYPES:
        table, build = NODE_TYPES[type_name]
        row = await loaders.by_id[table].load(id_)
        return build(row) if row else None
    if type_name in CURRENCY_NODE_TYPES:
        row = await loaders.by_id[CURRENCY_NODE_TYPES[type_name]].load(id_)
        if row is None:
            return None
        currency = await _currency_of(info, type_name, row)
        builders: dict[str, Any] = {
            "InvoiceLineItem": InvoiceLineItem.from_row,
            "InvoiceAmendment": InvoiceAmendment.from_row,
            "RefundRequestLineItem": RefundRequestLineItem.from_row,
        }
        return builders[type_name](row, currency)  # type: ignore[no-any-return]
    return None


async def _currency_of(info: Info, type_name: str, row: Any) -> str:
    loaders = info.context.loaders
    invoice_id = row.get("invoice_id")
    if type_name == "RefundRequestLineItem":
        refund = await loaders.by_id["refund_requests"].load(row["refund_request_id"])
        invoice_id = refund["invoice_id"] if refund else None
    invoice = await loaders.by_id["invoices"].load(invoice_id) if invoice_id else None
    return invoice["currency"].strip() if invoice else "USD"


async def _page(info: Info, table: str, build: Any, first: int | None, after: str | None) -> Connection[Any]:
    limit = check_first(first)
    after_id = decode_cursor(after)
    rows = await info.context.loaders.page(table, after_id, limit + 1)
    edges = [Edge(cursor=encode_cursor(r["id"]), node=build(r)) for r in rows[:limit]]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None),
    )


@strawberry.type
class MarketplaceQuery:
    @strawberry.field(description="Any object by its global ID; null when missing or not yours")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    @strawberry.field(description=f"Objects by global ID, in order (at most {MAX_NODES}); null where missing")
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise ValueError(f"`ids` takes at most {MAX_NODES} IDs, got {len(ids)}")
        return list(await asyncio.gather(*(resolve_node(info, i) for i in ids)))

    @strawberry.field
    async def invoice(self, info: Info, id: strawberry.ID) -> Invoice | None:
        id_ = decode(id, "Invoice")
        row = await info.context.loaders.by_id["invoices"].load(id_) if id_ is not None else None
        return Invoice.from_row(row) if row else None

    @strawberry.field
    async def variant(self, info: Info, id: strawberry.ID) -> Variant | None:
        id_ = decode(id, "Variant")
        row = await info.context.loaders.by_id["variants"].load(id_) if id_ is not None else None
        return Variant.from_row(row) if row else None

    @strawberry.field
    async def refund_request(self, info: Info, id: strawberry.ID) -> RefundRequest | None:
        id_ = decode(id, "RefundRequest")
        row = await info.context.loaders.by_id["refund_requests"].load(id_) if id_ is not None else None
        return RefundRequest.from_row(row) if row else None

    @strawberry.field(description="Invoices you may see, oldest first")
    async def invoices(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Invoice]:
        return await _page(info, "invoices", Invoice.from_row, first, after)

    @strawberry.field(description="Variants you may see, oldest first")
    async def variants(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Variant]:
        return await _page(info, "variants", Variant.from_row, first, after)

    @strawberry.field(description="Refund requests you may see, oldest first")
    async def refund_requests(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[RefundRequest]:
        return await _page(info, "refund_requests", RefundRequest.from_row, first, after)
