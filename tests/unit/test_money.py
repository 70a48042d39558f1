"""Money is formatted per currency: symbol, grouping and decimals; `money_fields` gives a Money
field its `…Cents` / `…Formatted` pair, read from the object or awaited through the loaders."""

from __future__ import annotations

from decimal import Decimal

import pytest
import strawberry

from app.api.context import Info
from app.api.money import Money, format_money, money, money_fields


@pytest.mark.parametrize(
    ("amount", "currency", "formatted"),
    [
        ("12.5", "EUR", "€12.50"),
        ("1234.5", "USD", "$1,234.50"),
        ("7", "AUD", "A$7.00"),
        ("-3", "GBP", "-£3.00"),
        ("0.1", "CHF", "0.10 CHF"),
    ],
)
def test_money_is_formatted_per_currency(amount: str, currency: str, formatted: str) -> None:
    assert format_money(Decimal(amount), currency) == formatted


@strawberry.type
class Priced:
    price: Money
    owed: strawberry.Private[Money | None]

    price_cents, price_formatted = money_fields(lambda priced: priced.price)

    async def _owed(self, info: Info) -> Money | None:
        return self.owed

    owed_cents, owed_formatted = money_fields(_owed, nullable=True)


@strawberry.type
class Query:
    @strawberry.field
    def priced(self, owed: str | None = None) -> Priced:
        return Priced(price=money(Decimal("1234.5"), "usd"), owed=money(Decimal(owed), "EUR") if owed else None)


SCHEMA = strawberry.Schema(query=Query)


def test_the_pair_sits_beside_its_field_typed_as_the_api_types_it() -> None:
    # given a type with a Money field read from the object, and one awaited that may be null
    sdl = SCHEMA.as_str()
    # then each gets an Int cents field and a String formatted one, nullable only when asked
    assert "priceCents: Int\n" in sdl and "priceFormatted: String!\n" in sdl
    assert "owedCents: Int\n" in sdl and "owedFormatted: String\n" in sdl


async def test_the_pair_reads_the_money_and_a_null_money_gives_nulls() -> None:
    query = "query($owed: String) { priced(owed: $owed) { priceCents priceFormatted owedCents owedFormatted } }"
    owing = await SCHEMA.execute(query, variable_values={"owed": "-3"})
    assert owing.errors is None
    assert owing.data == {
        "priced": {"priceCents": 123450, "priceFormatted": "$1,234.50", "owedCents": -300, "owedFormatted": "-€3.00"}
    }
    clear = await SCHEMA.execute(query)
    assert clear.data == {"priced": {"priceCents": 123450, "priceFormatted": "$1,234.50", "owedCents": None,
                                     "owedFormatted": None}}
