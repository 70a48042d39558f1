"""Orders: a buyer's purchase, split into one invoice per seller."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import asyncpg
import strawberry

from app.api.context import Info
from app.api.enums import OrderStatus
from app.api.marketplace import invoicing
from app.api.marketplace.external_ids import ExternalId, external_ids
from app.api.money import Money, money, money_fields
from app.api.node import Node, node_fields

if TYPE_CHECKING:
    from app.api.marketplace.invoicing import Invoice

# An invoice refers back to its order, so the two modules import each other: annotations name the
# other's types lazily, and resolvers read them from the module when they run.
InvoiceRef = Annotated["Invoice", strawberry.lazy("app.api.marketplace.invoicing")]


@strawberry.type
class Order(Node):
    legacy_id: int
    buyer_name: str
    buyer_email: str
    status: OrderStatus
    external_id: str | None = strawberry.field(description="The order's id in the system it came from")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Order:
        return cls(
            **node_fields("Order", row),
            buyer_name=row["buyer_name"],
            buyer_email=row["buyer_email"],
            status=OrderStatus(row["status"]),
            external_id=row["external_id"],
        )

    @strawberry.field(description="Other systems' ids for this order")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await external_ids(info, "external_ids_by_order", self.legacy_id)

    async def _total(self, info: Info) -> Money | None:
        rows = await info.context.loaders.children["invoices_by_order"].load(self.legacy_id)
        currencies = {r["currency"].strip() for r in rows}
        if len(currencies) != 1:
            return None
        totals = [(await invoicing.invoice_amounts(info, r["id"]))[1] for r in rows]
        return money(sum(totals, Decimal(0)), currencies.pop())

    @strawberry.field(
        description="The sum of its invoices' totals (a seller key: of its own invoices); null when they are in"
        " different currencies or there are none"
    )
    async def total(self, info: Info) -> Money | None:
        return await self._total(info)

    total_cents, total_formatted = money_fields(_total, nullable=True)

    @strawberry.field(description="The order's invoices (a seller key sees only its own)")
    async def invoices(self, info: Info) -> list[InvoiceRef]:
        rows = await info.context.loaders.children["invoices_by_order"].load(self.legacy_id)
        return [invoicing.Invoice.from_row(r) for r in rows]
