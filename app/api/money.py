"""Money: a decimal amount as a string (never a float) with its currency."""

from __future__ import annotations

from decimal import Decimal

import strawberry

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "AUD": "A$", "CAD": "C$", "NZD": "NZ$", "JPY": "¥"}
CENT = Decimal("0.01")


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
