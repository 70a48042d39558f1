"""Shipments: what of an invoice was sent, by which carrier, with which line items."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import asyncpg
import strawberry

from app.api.context import Info
from app.api.enums import ShipmentStatus
from app.api.marketplace import invoicing
from app.api.node import Node, node_fields

if TYPE_CHECKING:
    from app.api.marketplace.invoicing import InvoiceLineItem

# An invoice lists its shipments, whose items point back at its line items, so the two modules
# import each other: annotations name the other's types lazily, and resolvers read them from the
# module when they run.
InvoiceLineItemRef = Annotated["InvoiceLineItem", strawberry.lazy("app.api.marketplace.invoicing")]


@strawberry.type
class Shipment(Node):
    legacy_id: int
    carrier: str
    tracking_number: str | None
    tracking_link: str | None = strawberry.field(description="The carrier's tracking page for this shipment")
    status: ShipmentStatus
    shipped_at: datetime | None
    created_at: datetime
    updated_at: datetime
    invoice_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Shipment:
        return cls(
            **node_fields("Shipment", row),
            carrier=row["carrier"],
            tracking_number=row["tracking_number"],
            tracking_link=row["tracking_link"],
            status=ShipmentStatus(row["status"]),
            shipped_at=row["shipped_at"],
            invoice_id=row["invoice_id"],
        )

    @strawberry.field
    async def items(self, info: Info) -> list[ShipmentItem]:
        return await self._items(info)

    @strawberry.field(description="The line items shipped, with their quantities (the same as `items`)")
    async def shipped_items(self, info: Info) -> list[ShipmentItem]:
        return await self._items(info)

    async def _items(self, info: Info) -> list[ShipmentItem]:
        rows = await info.context.loaders.children["shipment_items_by_shipment"].load(self.legacy_id)
        return [ShipmentItem.from_row(r) for r in rows]


@strawberry.type
class ShipmentItem(Node):
    legacy_id: int
    quantity: int
    created_at: datetime
    updated_at: datetime
    invoice_line_item_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ShipmentItem:
        return cls(
            **node_fields("ShipmentItem", row),
            quantity=row["quantity"],
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    @strawberry.field
    async def invoice_line_item(self, info: Info) -> InvoiceLineItemRef | None:
        return await invoicing.line_item(info, self.invoice_line_item_id)

    @strawberry.field(description="The line item shipped (the same as `invoiceLineItem`)")
    async def line_item(self, info: Info) -> InvoiceLineItemRef | None:
        return await invoicing.line_item(info, self.invoice_line_item_id)
