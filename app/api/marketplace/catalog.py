"""The catalog: sellers, their products, the products' variants and the variants' option values."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg
import strawberry

from app.api.context import Info
from app.api.ids import to_global_id
from app.api.marketplace.external_ids import ExternalId, external_ids
from app.api.money import Money, money, money_fields
from app.api.node import Node, node_fields
from app.api.pagination import Connection, Edge, PageInfo, encode_cursor


@strawberry.type
class Seller(Node):
    legacy_id: int
    name: str
    business_name: str | None = strawberry.field(description="The seller's legal business name")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Seller:
        return cls(**node_fields("Seller", row), name=row["name"], business_name=row["business_name"])

    @strawberry.field(description="Other systems' ids for this seller")
    async def external_ids(self, info: Info) -> list[ExternalId]:
        return await external_ids(info, "external_ids_by_seller", self.legacy_id)

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
            **node_fields("Product", row),
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
            **node_fields("Variant", row),
            sku=row["sku"],
            barcode=row["barcode"],
            count_on_hand=row["count_on_hand"],
            infinite_quantity=row["infinite_quantity"],
            price=money(row["price"], row["currency"]),
            sale_price=money(sale, row["currency"]) if sale is not None else None,
            currency=row["currency"].strip(),
            product_id=row["product_id"],
        )

    price_cents, price_formatted = money_fields(lambda variant: variant.price)

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

    lowest_price_cents, lowest_price_formatted = money_fields(_lowest)

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
