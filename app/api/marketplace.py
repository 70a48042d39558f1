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
from app.api.money import Money, cents, formatted, money
from app.api.node import Node
from app.api.pagination import Connection, Edge, PageInfo, encode_cursor
from app.api.status_flags import InvoiceStatusFlag, status_flags
from app.policy.marketplace_tables import TABLES

CENTS = "The amount in cents (GraphQL Int: null, with an error, beyond 32 bits)"
FORMATTED = "The amount human-readable, e.g. `$1,234.50`"


def _base(type_name: str, row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": to_global_id(type_name, row["id"]),
        "legacy_id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@strawberry.type(description="Another system's id for this object (`key` names the system)")
class ExternalId:
    key: str
    value: str


async def _external_ids(info: Info, link: str, owner_id: int) -> list[ExternalId]:
    rows = await info.context.loaders.children[link].load(owner_id)
    return [ExternalId(key=r["key"], value=r["value"]) for r in rows]


@strawberry.type
class Seller(Node):
    legacy_id: int
    name: str
    business_name: str | None = strawberry.field(description="The seller's legal business name")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Seller:
        return cls(**_base("Seller", row), name=row["name"], business_name=row["business_name"])

    @strawberry.field(description="Other systems' ids for this seller")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await _external_ids(info, "external_ids_by_seller", self.legacy_id)

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
    sale_price: Money | None = strawberry.field(description="The price while on sale; null when not on sale")
    currency: str
    created_at: datetime
    updated_at: datetime
    product_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Variant:
        sale = row["sale_price"]
        return cls(
            **_base("Variant", row),
            sku=row["sku"],
            barcode=row["barcode"],
            count_on_hand=row["count_on_hand"],
            infinite_quantity=row["infinite_quantity"],
            price=money(row["price"], row["currency"]),
            sale_price=money(sale, row["currency"]) if sale is not None else None,
            currency=row["currency"].strip(),
            product_id=row["product_id"],
        )

    @strawberry.field(description=CENTS)
    def price_cents(self) -> int | None:
        return cents(self.price)

    @strawberry.field(description=FORMATTED)
    def price_formatted(self) -> str:
        return formatted(self.price)

    def _lowest(self) -> Money:
        if self.sale_price is not None and self.sale_price.amount < self.price.amount:
            return self.sale_price
        return self.price

    @strawberry.field(
        description="The lower of price and salePrice, what a buyer pays now: a decimal string in the variant's"
        " currency (Marketplacer's shape; lowestPriceCents and lowestPriceFormatted beside it)"
    )
    def lowest_price(self) -> Decimal:
        return self._lowest().amount

    @strawberry.field(description=CENTS)
    def lowest_price_cents(self) -> int | None:
        return cents(self._lowest())

    @strawberry.field(description=FORMATTED)
    def lowest_price_formatted(self) -> str:
        return formatted(self._lowest())

    @strawberry.field(description="The variant's option values (its size, its colour …), each with its type")
    async def option_values(self, info: Info) -> Connection[OptionValue]:
        rows = await info.context.loaders.children["option_values_by_variant"].load(self.legacy_id)
        edges = [Edge(cursor=encode_cursor(r["id"]), node=OptionValue.from_row(r)) for r in rows]
        end = edges[-1].cursor if edges else None
        return Connection(edges=edges, page_info=PageInfo(has_next_page=False, end_cursor=end))

    @strawberry.field
    async def product(self, info: Info) -> Product | None:
        row = await info.context.loaders.by_id["products"].load(self.product_id)
        return Product.from_row(row) if row else None


@strawberry.type(description="A kind of option variants differ in: Size, Colour …")
class OptionType:
    id: strawberry.ID
    legacy_id: int
    name: str


@strawberry.type(description="One value of an option type: M (a Size), navy (a Colour) …")
class OptionValue:
    id: strawberry.ID
    legacy_id: int
    name: str
    option_type: OptionType

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> OptionValue:
        """A `variant_option_value_details` row."""
        return cls(
            id=to_global_id("OptionValue", row["option_value_id"]),
            legacy_id=row["option_value_id"],
            name=row["name"],
            option_type=OptionType(
                id=to_global_id("OptionType", row["option_type_id"]),
                legacy_id=row["option_type_id"],
                name=row["option_type_name"],
            ),
        )


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
            **_base("Order", row),
            buyer_name=row["buyer_name"],
            buyer_email=row["buyer_email"],
            status=OrderStatus(row["status"]),
            external_id=row["external_id"],
        )

    @strawberry.field(description="Other systems' ids for this order")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await _external_ids(info, "external_ids_by_order", self.legacy_id)

    @strawberry.field(
        description="The sum of its invoices' totals (a seller key: of its own invoices); null when they are in"
        " different currencies or there are none"
    )
    async def total(self, info: Info) -> Money | None:
        return await self._total(info)

    @strawberry.field(description=CENTS)
    async def total_cents(self, info: Info) -> int | None:
        total = await self._total(info)
        return cents(total) if total else None

    @strawberry.field(description=FORMATTED)
    async def total_formatted(self, info: Info) -> str | None:
        total = await self._total(info)
        return formatted(total) if total else None

    async def _total(self, info: Info) -> Money | None:
        rows = await info.context.loaders.children["invoices_by_order"].load(self.legacy_id)
        currencies = {r["currency"].strip() for r in rows}
        if len(currencies) != 1:
            return None
        totals = [(await _invoice_amounts(info, r["id"]))[1] for r in rows]
        return money(sum(totals, Decimal(0)), currencies.pop())

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
        return money((await _invoice_amounts(info, self.legacy_id))[0], self.currency)

    @strawberry.field(description="Subtotal plus amendments (discounts are negative)")
    async def total(self, info: Info) -> Money:
        return money((await _invoice_amounts(info, self.legacy_id))[1], self.currency)

    @strawberry.field(description=CENTS)
    async def subtotal_cents(self, info: Info) -> int | None:
        return int((await _invoice_amounts(info, self.legacy_id))[0] * 100)

    @strawberry.field(description=FORMATTED)
    async def subtotal_formatted(self, info: Info) -> str:
        return formatted(money((await _invoice_amounts(info, self.legacy_id))[0], self.currency))

    @strawberry.field(description=CENTS)
    async def total_cents(self, info: Info) -> int | None:
        return int((await _invoice_amounts(info, self.legacy_id))[1] * 100)

    @strawberry.field(description=FORMATTED)
    async def total_formatted(self, info: Info) -> str:
        return formatted(money((await _invoice_amounts(info, self.legacy_id))[1], self.currency))

    @strawberry.field(
        description="The invoice's story as flags, derived from its status, its line items' and its refund"
        " requests' statuses (each flag is described on InvoiceStatusFlag)"
    )
    async def status_flags(self, info: Info) -> list[InvoiceStatusFlag]:
        lines = await info.context.loaders.children["line_items_by_invoice"].load(self.legacy_id)
        refunds = await info.context.loaders.children["refund_requests_by_invoice"].load(self.legacy_id)
        return status_flags(self.status.value, (r["status"] for r in lines), (r["status"] for r in refunds))

    @strawberry.field(description="Other systems' ids for this invoice")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await _external_ids(info, "external_ids_by_invoice", self.legacy_id)


async def _invoice_amounts(info: Info, invoice_id: int) -> tuple[Decimal, Decimal]:
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
            **_base("InvoiceLineItem", row),
            quantity=row["quantity"],
            unit_price=money(row["unit_price"], currency),
            status=LineItemStatus(row["status"]),
            invoice_id=row["invoice_id"],
            variant_id=row["variant_id"],
        )

    @strawberry.field(description="quantity × unitPrice")
    def total(self) -> Money:
        return self._total()

    def _total(self) -> Money:
        return money(self.unit_price.amount * self.quantity, self.unit_price.currency_code)

    @strawberry.field(description=CENTS)
    def unit_price_cents(self) -> int | None:
        return cents(self.unit_price)

    @strawberry.field(description=FORMATTED)
    def unit_price_formatted(self) -> str:
        return formatted(self.unit_price)

    @strawberry.field(description=CENTS)
    def total_cents(self) -> int | None:
        return cents(self._total())

    @strawberry.field(description=FORMATTED)
    def total_formatted(self) -> str:
        return formatted(self._total())

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
            **_base("Shipment", row),
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
            **_base("ShipmentItem", row),
            quantity=row["quantity"],
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    @strawberry.field
    async def invoice_line_item(self, info: Info) -> InvoiceLineItem | None:
        return await _line_item(info, self.invoice_line_item_id)

    @strawberry.field(description="The line item shipped (the same as `invoiceLineItem`)")
    async def line_item(self, info: Info) -> InvoiceLineItem | None:
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

    @strawberry.field(description=CENTS)
    def amount_cents(self) -> int | None:
        return cents(self.amount)

    @strawberry.field(description=FORMATTED)
    def amount_formatted(self) -> str:
        return formatted(self.amount)


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
        return await self._total(info)

    @strawberry.field(description=CENTS)
    async def total_cents(self, info: Info) -> int | None:
        return cents(await self._total(info))

    @strawberry.field(description=FORMATTED)
    async def total_formatted(self, info: Info) -> str:
        return formatted(await self._total(info))

    async def _total(self, info: Info) -> Money:
        rows = await info.context.loaders.children["refund_lines_by_refund_request"].load(self.legacy_id)
        return money(sum((r["amount"] for r in rows), Decimal(0)), await self._currency(info))


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
            **_base("RefundRequestLineItem", row),
            quantity=row["quantity"],
            amount=money(row["amount"], currency),
            status=RefundRequestLineItemStatus(row["status"]),
            reason=row["reason"],
            invoice_line_item_id=row["invoice_line_item_id"],
        )

    @strawberry.field(description=CENTS)
    def amount_cents(self) -> int | None:
        return cents(self.amount)

    @strawberry.field(description=FORMATTED)
    def amount_formatted(self) -> str:
        return formatted(self.amount)

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
    cls.__name__: (TABLES[cls.__name__], cls.from_row)
    for cls in (Seller, Product, Variant, Order, Invoice, Shipment, ShipmentItem, RefundRequest)
}
# Types whose money needs their invoice's currency: loaded through the invoice.
CURRENCY_NODE_TYPES = {name: TABLES[name] for name in ("InvoiceLineItem", "InvoiceAmendment", "RefundRequestLineItem")}
