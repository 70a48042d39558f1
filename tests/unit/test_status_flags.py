"""Invoice.statusFlags (app.api.status_flags): the story an invoice's state tells, flag by flag."""

import pytest

from app.api.status_flags import InvoiceStatusFlag, status_flags

F = InvoiceStatusFlag


@pytest.mark.parametrize(
    ("status", "lines", "refunds", "flags"),
    [
        ("pending", ["pending", "pending"], [], [F.AWAITING_PAYMENT]),
        ("paid", ["allocated"], [], [F.PAID]),
        ("partially_shipped", ["shipped", "allocated"], [], [F.PAID, F.PARTIALLY_SHIPPED]),
        ("paid", ["shipped", "allocated"], [], [F.PAID, F.PARTIALLY_SHIPPED]),  # from the line items
        ("shipped", ["shipped", "shipped"], [], [F.PAID, F.SHIPPED]),
        ("paid", ["shipped", "cancelled"], [], [F.PAID, F.SHIPPED, F.PARTIALLY_CANCELLED]),
        ("cancelled", ["cancelled"], [], [F.CANCELLED]),
        ("shipped", ["shipped"], ["awaiting"], [F.PAID, F.SHIPPED, F.REFUND_REQUESTED]),
        ("shipped", ["shipped", "refunded"], ["refunded"], [F.PAID, F.SHIPPED, F.PARTIALLY_REFUNDED]),
        ("shipped", ["shipped"], ["rejected"], [F.PAID, F.SHIPPED]),
        ("refunded", ["refunded"], ["refunded"], [F.PAID, F.REFUNDED]),
        ("paid", [], [], [F.PAID]),
    ],
)
def test_flags_follow_the_invoice_its_line_items_and_refund_requests(
    status: str, lines: list[str], refunds: list[str], flags: list[InvoiceStatusFlag]
) -> None:
    assert status_flags(status, lines, refunds) == flags
