"""Refund requests: money a buyer asks back for an invoice, line item by line item."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import asyncpg
import strawberry

from app.api.context import Info
from app.api.enums import RefundRequestLineItemStatus, RefundRequestStatus
from app.api.marketplace import invoicing
from app.api.money import Money, money, money_fields
from app.api.node import Node, node_fields

if TYPE_CHECKING:
    from app.api.marketplace.invoicing import Invoice, InvoiceLineItem

# An invoice lists its refund requests, which point back at it and its line items, so the two
# modules import each other: annotations name the other's types lazily, and resolvers read them
# from the module when they run.
InvoiceRef = Annotated["Invoice", strawberry.lazy("app.api.marketplace.invoicing")]
InvoiceLineItemRef = Annotated["InvoiceLineItem", strawberry.lazy("app.api.marketplace.invoicing")]


@strawberry.type
class RefundRequest(Node):
    legacy_id: int
    status: RefundRequestStatus
    reason: str
    created_at: datetime
    updated_at: datetime
    invoice_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RefundRequest:
        return cls(
            **node_fields("RefundRequest", row),
            status=RefundRequestStatus(row["status"]),
            reason=row["reason"],
            invoice_id=row["invoice_id"],
        )

    @strawberry.field
    async def invoice(self, info: Info) -> InvoiceRef | None:
        row = await info.context.loaders.by_id["invoices"].load(self.invoice_id)
        return invoicing.Invoice.from_row(row) if row else None

    async def _currency(self, info: Info) -> str:
        row = await info.context.loaders.by_id["invoices"].load(self.invoice_id)
        return row["currency"].strip() if row else "USD"

    @strawberry.field
    async def line_items(self, info: Info) -> list[RefundRequestLineItem]:
        rows = await info.context.loaders.children["refund_lines_by_refund_request"].load(self.legacy_id)
        currency = await self._currency(info)
        return [RefundRequestLineItem.from_row(r, currency) for r in rows]

    async def _total(self, info: Info) -> Money:
        rows = await info.context.loaders.children["refund_lines_by_refund_request"].load(self.legacy_id)
        return money(sum((r["amount"] for r in rows), Decimal(0)), await self._currency(info))

    @strawberry.field(description="Sum of the line items' amounts")
    async def total(self, info: Info) -> Money:
        return await self._total(info)

    total_cents, total_formatted = money_fields(_total)


@strawberry.type
class RefundRequestLineItem(Node):
    legacy_id: int
    quantity: int
    amount: Money
    status: RefundRequestLineItemStatus
    reason: str = strawberry.field(description="Why this line item is to be refunded (may be empty)")
    created_at: datetime
    updated_at: datetime
    invoice_line_item_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record, currency: str) -> RefundRequestLineItem:
        return cls(
            **node_fields("RefundRequestLineItem", row),
            quantity=row["quantity"],
            amount=money(row["amount"], currency),
            status=RefundRequestLineItemStatus(row["status"]),
            reason=row["reason"],
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    amount_cents, amount_formatted = money_fields(lambda line: line.amount)

    @strawberry.field
    async def invoice_line_item(self, info: Info) -> InvoiceLineItemRef | None:
        return await invoicing.line_item(info, self.invoice_line_item_id)
