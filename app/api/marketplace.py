"""The marketplace's object types. Each is built from a database row; relations resolve through
the request's DataLoaders, so a page of 100 invoices with all their relations is a fixed handful
of SQL statements."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import strawberry

from app.api.context import Info
from app.api.enums import (
    InvoiceStatus,
    LineItemStatus,
    OrderStatus,
    RefundRequestLineItemStatus,
    RefundRequestStatus,
    ShipmentStatus,
)
from app.api.ids import to_global_id
from app.api.money import Money, money
from app.api.node import Node


def _base(type_name: str, row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": to_global_id(type_name, row["id"]),
        "legacy_id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@strawberry.type
class Seller(Node):
    legacy_id: int
    name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Seller:
        return cls(**_base("Seller", row), name=row["name"])

    @strawberry.field
    async def products(self, info: Info) -> list[Product]:
        return [
            Product.from_row(r) for r in await info.context.loaders.children["products_by_seller"].load(self.legacy_id)
        ]


@strawberry.type
class Product(Node):
    legacy_id: int
    title: str
    description: str
    created_at: datetime
    updated_at: datetime
    seller_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Product:
        return cls(
            **_base("Product", row),
            title=row["title"],
            description=row["description"],
            seller_id=row["seller_id"],
        )

    @strawberry.field
    async def seller(self, info: Info) -> Seller | None:
        row = await info.context.loaders.by_id["sellers"].load(self.seller_id)
        return Seller.from_row(row) if row else None

    @strawberry.field
    async def variants(self, info: Info) -> list[Variant]:
        rows = await info.context.loaders.children["variants_by_product"].load(self.legacy_id)
        return [Variant.from_row(r) for r in rows]


@strawberry.type
class Variant(Node):
    legacy_id: int
    sku: str
    barcode: str | None
    count_on_hand: int
    infinite_quantity: bool
    price: Money
    currency: str
    created_at: datetime
    updated_at: datetime
    product_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Variant:
        return cls(
            **_base("Variant", row),
            sku=row["sku"],
            barcode=row["barcode"],
            count_on_hand=row["count_on_hand"],
            infinite_quantity=row["infinite_quantity"],
            price=money(row["price"], row["currency"]),
            currency=row["currency"].strip(),
            product_id=row["product_id"],
        )

    @strawberry.field
    async def product(self, info: Info) -> Product | None:
        row = await info.context.loaders.by_id["products"].load(self.product_id)
        return Product.from_row(row) if row else None


@strawberry.type
class Order(Node):
    legacy_id: int
    buyer_name: str
    buyer_email: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Order:
        return cls(
            **_base("Order", row),
            buyer_name=row["buyer_name"],
            buyer_email=row["buyer_email"],
            status=OrderStatus(row["status"]),
        )

    @strawberry.field(description="The order's invoices (a seller key sees only its own)")
    async def invoices(self, info: Info) -> list[Invoice]:
        rows = await info.context.loaders.children["invoices_by_order"].load(self.legacy_id)
        return [Invoice.from_row(r) for r in rows]


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
            **_base("Invoice", row),
            status=InvoiceStatus(row["status"]),
            currency=row["currency"].strip(),
            order_id=row["order_id"],
            seller_id=row["seller_id"],
        )

    @strawberry.field
    async def order(self, info: Info) -> Order | None:
        row = await info.context.loaders.by_id["orders"].load(self.order_id)
        return Order.from_row(row) if row else None

    @strawberry.field
    async def seller(self, info: Info) -> Seller | None:
        row = await info.context.loaders.by_id["sellers"].load(self.seller_id)
        return Seller.from_row(row) if row else None

    @strawberry.field
    async def line_items(self, info: Info) -> list[InvoiceLineItem]:
        rows = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        return [InvoiceLineItem.from_row(r, self.currency) for r in rows]

    @strawberry.field
    async def shipments(self, info: Info) -> list[Shipment]:
        rows = await info.context.loaders.children["shipments_by_invoice"].load(self.legacy_id)
        return [Shipment.from_row(r) for r in rows]

    @strawberry.field
    async def amendments(self, info: Info) -> list[InvoiceAmendment]:
        rows = await info.context.loaders.children["amendments_by_invoice"].load(self.legacy_id)
        return [InvoiceAmendment.from_row(r, self.currency) for r in rows]

    @strawberry.field
    async def refund_requests(self, info: Info) -> list[RefundRequest]:
        rows = await info.context.loaders.children["refund_requests_by_invoice"].load(self.legacy_id)
        return [RefundRequest.from_row(r) for r in rows]

    @strawberry.field(description="Sum of quantity × unit price over the line items")
    async def subtotal(self, info: Info) -> Money:
        rows = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        return money(sum((r["quantity"] * r["unit_price"] for r in rows), Decimal(0)), self.currency)

    @strawberry.field(description="Subtotal plus amendments (discounts are negative)")
    async def total(self, info: Info) -> Money:
        lines = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        amendments = await info.context.loaders.children["amendments_by_invoice"].load(self.legacy_id)
        subtotal = sum((r["quantity"] * r["unit_price"] for r in lines), Decimal(0))
        return money(subtotal + sum((r["amount"] for r in amendments), Decimal(0)), self.currency)


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
            **_base("InvoiceLineItem", row),
            quantity=row["quantity"],
            unit_price=money(row["unit_price"], currency),
            status=LineItemStatus(row["status"]),
            invoice_id=row["invoice_id"],
            variant_id=row["variant_id"],
        )

    @strawberry.field(description="quantity × unitPrice")
    def total(self) -> Money:
        return money(self.unit_price.amount * self.quantity, self.unit_price.currency_code)

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


@strawberry.type
class Shipment(Node):
    legacy_id: int
    carrier: str
    tracking_number: str | None
    status: ShipmentStatus
    shipped_at: datetime | None
    created_at: datetime
    updated_at: datetime
    invoice_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Shipment:
        return cls(
            **_base("Shipment", row),
            carrier=row["carrier"],
            tracking_number=row["tracking_number"],
            status=ShipmentStatus(row["status"]),
            shipped_at=row["shipped_at"],
            invoice_id=row["invoice_id"],
        )

    @strawberry.field
    async def items(self, info: Info) -> list[ShipmentItem]:
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
            **_base("ShipmentItem", row),
            quantity=row["quantity"],
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    @strawberry.field
    async def invoice_line_item(self, info: Info) -> InvoiceLineItem | None:
        return await _line_item(info, self.invoice_line_item_id)


@strawberry.type
class InvoiceAmendment(Node):
    legacy_id: int
    reason: str
    amount: Money
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record, currency: str) -> InvoiceAmendment:
        return cls(**_base("InvoiceAmendment", row), reason=row["reason"], amount=money(row["amount"], currency))


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
            **_base("RefundRequest", row),
            status=RefundRequestStatus(row["status"]),
            reason=row["reason"],
            invoice_id=row["invoice_id"],
        )

    @strawberry.field
    async def invoice(self, info: Info) -> Invoice | None:
        row = await info.context.loaders.by_id["invoices"].load(self.invoice_id)
        return Invoice.from_row(row) if row else None

    async def _currency(self, info: Info) -> str:
        row = await info.context.loaders.by_id["invoices"].load(self.invoice_id)
        return row["currency"].strip() if row else "USD"

    @strawberry.field
    async def line_items(self, info: Info) -> list[RefundRequestLineItem]:
        rows = await info.context.loaders.children["refund_lines_by_refund_request"].load(self.legacy_id)
        currency = await self._currency(info)
        return [RefundRequestLineItem.from_row(r, currency) for r in rows]

    @strawberry.field(description="Sum of the line items' amounts")
    async def total(self, info: Info) -> Money:
        rows = await info.context.loaders.children["refund_lines_by_refund_request"].load(self.legacy_id)
        return money(sum((r["amount"] for r in rows), Decimal(0)), await self._currency(info))


@strawberry.type
class RefundRequestLineItem(Node):
    legacy_id: int
    quantity: int
    amount: Money
    status: RefundRequestLineItemStatus
    created_at: datetime
    updated_at: datetime
    invoice_line_item_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record, currency: str) -> RefundRequestLineItem:
        return cls(
            **_base("RefundRequestLineItem", row),
            quantity=row["quantity"],
            amount=money(row["amount"], currency),
            status=RefundRequestLineItemStatus(row["status"]),
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    @strawberry.field
    async def invoice_line_item(self, info: Info) -> InvoiceLineItem | None:
        return await _line_item(info, self.invoice_line_item_id)


async def _line_item(info: Info, line_item_id: int) -> InvoiceLineItem | None:
    row = await info.context.loaders.by_id["invoice_line_items"].load(line_item_id)
    if row is None:
        return None
    invoice = await info.context.loaders.by_id["invoices"].load(row["invoice_id"])
    return InvoiceLineItem.from_row(row, invoice["currency"].strip() if invoice else "USD")


# global-ID type name -> (table, constructor) for node(id) / nodes(ids)
NODE_TYPES: dict[str, tuple[str, Any]] = {
    "Seller": ("sellers", Seller.from_row),
    "Product": ("products", Product.from_row),
    "Variant": ("variants", Variant.from_row),
    "Order": ("orders", Order.from_row),
    "Invoice": ("invoices", Invoice.from_row),
    "Shipment": ("shipments", Shipment.from_row),
    "ShipmentItem": ("shipment_items", ShipmentItem.from_row),
    "RefundRequest": ("refund_requests", RefundRequest.from_row),
}
# Types whose money needs their invoice's currency: loaded through the invoice.
CURRENCY_NODE_TYPES = {
    "InvoiceLineItem": "invoice_line_items",
    "InvoiceAmendment": "invoice_amendments",
    "RefundRequestLineItem": "refund_request_line_items",
}
