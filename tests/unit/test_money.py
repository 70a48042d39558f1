"""Money is formatted per currency: symbol, grouping and decimals."""

from decimal import Decimal

import pytest

from app.api.money import format_money


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

