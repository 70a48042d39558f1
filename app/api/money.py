"""Money: a decimal amount as a string (never a float) with its currency, and the `…Cents` /
`…Formatted` pair (Marketplacer's shape) that sits beside every Money field of the marketplace."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import strawberry

from app.api.context import Info

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "AUD": "A$", "CAD": "C$", "NZD": "NZ$", "JPY": "¥"}
CENT = Decimal("0.01")
CENTS = "The amount in cents (GraphQL Int: null, with an error, beyond 32 bits)"
FORMATTED = "The amount human-readable, e.g. `$1,234.50`"


@strawberry.type(description="An amount of money. `amount` is a decimal string, exact to the cent.")
class Money:
    amount: Decimal
    currency_code: str

    @strawberry.field(description="Human-readable, e.g. `$1,234.50`, `-€3.00`")
    def formatted(self) -> str:
        return formatted(self)


def money(amount: Decimal, currency: str) -> Money:
    return Money(amount=Decimal(amount).quantize(CENT), currency_code=currency.strip().upper())


def format_money(amount: Decimal, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    symbol = _SYMBOLS.get(currency)
    number = f"{abs(amount).quantize(CENT):,}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def cents(value: Money) -> int:
    """The amount in cents (Marketplacer's `…Cents` fields): `12.50` → 1250."""
    return int(value.amount * 100)


def formatted(value: Money) -> str:
    """Human-readable (Marketplacer's `…Formatted` fields): `$1,234.50`, `-€3.00`."""
    return format_money(value.amount, value.currency_code)


SyncMoney = Callable[[Any], Money | None]
AsyncMoney = Callable[[Any, Info], Awaitable[Money | None]]


def money_fields(source: SyncMoney | AsyncMoney, *, nullable: bool = False) -> tuple[Any, Any]:
    """The `…Cents` (`Int`) and `…Formatted` (`String!`; `String` when `nullable`) fields of the
    Money that `source` gives for an object: `source(obj)`, or `await source(obj, info)` when it is
    a coroutine function (a total read through the loaders). A null Money gives nulls. Assign the
    pair in the class body, where the two fields are to appear in the schema:

        price_cents, price_formatted = money_fields(lambda variant: variant.price)

    Sync sources get sync resolvers, so a field read from the row costs no awaitable."""
    text_type: Any = str | None if nullable else str
    if inspect.iscoroutinefunction(source):
        read = source

        async def cents_async(self: Any, info: Info) -> int | None:
            value = await read(self, info)
            return None if value is None else cents(value)

        async def formatted_async(self: Any, info: Info) -> str | None:
            value = await read(self, info)
            return None if value is None else formatted(value)

        cents_resolver: Any = cents_async
        formatted_resolver: Any = formatted_async
    else:
        get: Any = source

        def cents_sync(self: Any) -> int | None:
            value = get(self)
            return None if value is None else cents(value)

        def formatted_sync(self: Any) -> str | None:
            value = get(self)
            return None if value is None else formatted(value)

        cents_resolver, formatted_resolver = cents_sync, formatted_sync
    return (
        strawberry.field(resolver=cents_resolver, description=CENTS),
        strawberry.field(resolver=formatted_resolver, description=FORMATTED, graphql_type=text_type),
    )
