"""Invoices: one seller's part of an order, with its line items and amendments (what it charges)
and its totals. Its shipments and refund requests are their own families."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import asyncpg
import strawberry

from app.api.context import Info
from app.api.enums import InvoiceStatus, LineItemStatus
from app.api.ids import to_global_id
from app.api.marketplace import orders, refunds, shipping
from app.api.marketplace.catalog import Seller, Variant
from app.api.marketplace.external_ids import ExternalId, external_ids
from app.api.money import Money, money, money_fields
from app.api.node import Node, node_fields
from app.api.status_flags import InvoiceStatusFlag, status_flags

if TYPE_CHECKING:
    from app.api.marketplace.orders import Order
    from app.api.marketplace.refunds import RefundRequest
    from app.api.marketplace.shipping import Shipment

# Orders, shipments and refund requests refer back to invoices, so these modules import each other:
# annotations name the other's types lazily, and resolvers read them from the module when they run.
OrderRef = Annotated["Order", strawberry.lazy("app.api.marketplace.orders")]
ShipmentRef = Annotated["Shipment", strawberry.lazy("app.api.marketplace.shipping")]
RefundRequestRef = Annotated["RefundRequest", strawberry.lazy("app.api.marketplace.refunds")]


@strawberry.type
class Invoice(Node):
    legacy_id: int
    status: InvoiceStatus
    currency: str
    created_at: datetime
    updated_at: datetime
    order_id: strawberry.Private[int]
    seller_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Invoice:
        return cls(
            **node_fields("Invoice", row),
            status=InvoiceStatus(row["status"]),
            currency=row["currency"].strip(),
            order_id=row["order_id"],
            seller_id=row["seller_id"],
        )

    @strawberry.field
    async def order(self, info: Info) -> OrderRef | None:
        row = await info.context.loaders.by_id["orders"].load(self.order_id)
        return orders.Order.from_row(row) if row else None

    @strawberry.field
    async def seller(self, info: Info) -> Seller | None:
        row = await info.context.loaders.by_id["sellers"].load(self.seller_id)
        return Seller.from_row(row) if row else None

    @strawberry.field
    async def line_items(self, info: Info) -> list[InvoiceLineItem]:
        rows = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        return [InvoiceLineItem.from_row(r, self.currency) for r in rows]

    @strawberry.field
    async def shipments(self, info: Info) -> list[ShipmentRef]:
        rows = await info.context.loaders.children["shipments_by_invoice"].load(self.legacy_id)
        return [shipping.Shipment.from_row(r) for r in rows]

    @strawberry.field
    async def amendments(self, info: Info) -> list[InvoiceAmendment]:
        rows = await info.context.loaders.children["amendments_by_invoice"].load(self.legacy_id)
        return [InvoiceAmendment.from_row(r, self.currency) for r in rows]

    @strawberry.field
    async def refund_requests(self, info: Info) -> list[RefundRequestRef]:
        rows = await info.context.loaders.children["refund_requests_by_invoice"].load(self.legacy_id)
        return [refunds.RefundRequest.from_row(r) for r in rows]

    async def _subtotal(self, info: Info) -> Money:
        return money((await invoice_amounts(info, self.legacy_id))[0], self.currency)

    async def _total(self, info: Info) -> Money:
        return money((await invoice_amounts(info, self.legacy_id))[1], self.currency)

    @strawberry.field(description="Sum of quantity × unit price over the line items")
    async def subtotal(self, info: Info) -> Money:
        return await self._subtotal(info)

    @strawberry.field(description="Subtotal plus amendments (discounts are negative)")
    async def total(self, info: Info) -> Money:
        return await self._total(info)

    subtotal_cents, subtotal_formatted = money_fields(_subtotal)
    total_cents, total_formatted = money_fields(_total)

    @strawberry.field(
        description="The invoice's story as flags, derived from its status, its line items' and its refund"
        " requests' statuses (each flag is described on InvoiceStatusFlag)"
    )
    async def status_flags(self, info: Info) -> list[InvoiceStatusFlag]:
        lines = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        refund_rows = await info.context.loaders.children["refund_requests_by_invoice"].load(self.legacy_id)
        return status_flags(self.status.value, (r["status"] for r in lines), (r["status"] for r in refund_rows))

    @strawberry.field(description="Other systems' ids for this invoice")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await external_ids(info, "external_ids_by_invoice", self.legacy_id)


async def invoice_amounts(info: Info, invoice_id: int) -> tuple[Decimal, Decimal]:
    """An invoice's subtotal (line items) and total (with its amendments)."""
    lines = await info.context.loaders.children["line_items_by_invoice"].load(invoice_id)
    amendments = await info.context.loaders.children["amendments_by_invoice"].load(invoice_id)
    subtotal = sum((r["quantity"] * r["unit_price"] for r in lines), Decimal(0))
    return subtotal, subtotal + sum((r["amount"] for r in amendments), Decimal(0))


@strawberry.type
class InvoiceLineItem(Node):
    legacy_id: int
    quantity: int
    unit_price: Money
    status: LineItemStatus
    created_at: datetime
    updated_at: datetime
    invoice_id: strawberry.Private[int]
    variant_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: asyncpg.Record, currency: str) -> InvoiceLineItem:
        return cls(
            **node_fields("InvoiceLineItem", row),
            quantity=row["quantity"],
            unit_price=money(row["unit_price"], currency),
            status=LineItemStatus(row["status"]),
            invoice_id=row["invoice_id"],
            variant_id=row["variant_id"],
        )

    def _total(self) -> Money:
        return money(self.unit_price.amount * self.quantity, self.unit_price.currency_code)

    @strawberry.field(description="quantity × unitPrice")
    def total(self) -> Money:
        return self._total()

    unit_price_cents, unit_price_formatted = money_fields(lambda line: line.unit_price)
    total_cents, total_formatted = money_fields(_total)

    @strawberry.field(
        name="variantId", description="The global ID of the variant sold (null if it is gone or not visible)"
    )
    async def variant_global_id(self, info: Info) -> strawberry.ID | None:
        if self.variant_id is None:
            return None
        row = await info.context.loaders.by_id["variants"].load(self.variant_id)
        return to_global_id("Variant", row["id"]) if row else None

    @strawberry.field
    async def variant(self, info: Info) -> Variant | None:
        if self.variant_id is None:
            return None
        row = await info.context.loaders.by_id["variants"].load(self.variant_id)
        return Variant.from_row(row) if row else None

    @strawberry.field
    async def invoice(self, info: Info) -> Invoice | None:
        row = await info.context.loaders.by_id["invoices"].load(self.invoice_id)
        return Invoice.from_row(row) if row else None


async def line_item(info: Info, line_item_id: int) -> InvoiceLineItem | None:
    """An invoice line item by id, its money in its invoice's currency (USD when the invoice is
    not visible)."""
    row = await info.context.loaders.by_id["invoice_line_items"].load(line_item_id)
    if row is None:
        return None
    invoice = await info.context.loaders.by_id["invoices"].load(row["invoice_id"])
    return InvoiceLineItem.from_row(row, invoice["currency"].strip() if invoice else "USD")


@strawberry.type
class InvoiceAmendment(Node):
    legacy_id: int
    reason: str
    amount: Money
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record, currency: str) -> InvoiceAmendment:
        return cls(**node_fields("InvoiceAmendment", row), reason=row["reason"], amount=money(row["amount"], currency))

    amount_cents, amount_formatted = money_fields(lambda amendment: amendment.amount)
