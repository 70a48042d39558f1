"""Invoice.statusFlags: an invoice's story as a set of flags, Marketplacer-style, derived from its
status, its line items' statuses and its refund requests' statuses. Pure."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import strawberry


@strawberry.enum(description="One part of an invoice's story; an invoice usually has several (see statusFlags)")
class InvoiceStatusFlag(enum.Enum):
    AWAITING_PAYMENT = strawberry.enum_value("AWAITING_PAYMENT", description="Not paid yet: status PENDING")
    PAID = strawberry.enum_value(
        "PAID", description="Payment was taken: status PAID, PARTIALLY_SHIPPED, SHIPPED or REFUNDED"
    )
    PARTIALLY_SHIPPED = strawberry.enum_value(
        "PARTIALLY_SHIPPED",
        description="Some line items are shipped and others not yet (cancelled and refunded ones aside),"
        " or status PARTIALLY_SHIPPED",
    )
    SHIPPED = strawberry.enum_value(
        "SHIPPED", description="Every line item that is neither cancelled nor refunded is shipped, or status SHIPPED"
    )
    PARTIALLY_CANCELLED = strawberry.enum_value(
        "PARTIALLY_CANCELLED", description="Some line items are cancelled, not all, and the invoice is not"
    )
    CANCELLED = strawberry.enum_value("CANCELLED", description="The invoice is cancelled: status CANCELLED")
    REFUND_REQUESTED = strawberry.enum_value(
        "REFUND_REQUESTED", description="A refund request is open: AWAITING or APPROVED"
    )
    PARTIALLY_REFUNDED = strawberry.enum_value(
        "PARTIALLY_REFUNDED",
        description="Some money went back (a refund request or line item is REFUNDED) but the invoice is not REFUNDED",
    )
    REFUNDED = strawberry.enum_value("REFUNDED", description="The whole invoice is refunded: status REFUNDED")


def status_flags(
    status: str, line_statuses: Iterable[str], refund_statuses: Iterable[str]
) -> list[InvoiceStatusFlag]:
    """The flags of an invoice in `status` (database values, lower-case) whose line items and
    refund requests have these statuses, in the enum's order."""
    lines = list(line_statuses)
    refunds = set(refund_statuses)
    live = [s for s in lines if s not in ("cancelled", "refunded")]
    shipped = [s for s in live if s == "shipped"]
    flags: set[InvoiceStatusFlag] = set()
    F = InvoiceStatusFlag
    if status == "pending":
        flags.add(F.AWAITING_PAYMENT)
    if status in ("paid", "partially_shipped", "shipped", "refunded"):
        flags.add(F.PAID)
    if status == "shipped" or (live and len(shipped) == len(live)):
        flags.add(F.SHIPPED)
    elif status == "partially_shipped" or shipped:
        flags.add(F.PARTIALLY_SHIPPED)
    if status == "cancelled":
        flags.add(F.CANCELLED)
    elif "cancelled" in lines and len([s for s in lines if s != "cancelled"]) > 0:
        flags.add(F.PARTIALLY_CANCELLED)
    if refunds & {"awaiting", "approved"}:
        flags.add(F.REFUND_REQUESTED)
    if status == "refunded":
        flags.add(F.REFUNDED)
    elif "refunded" in refunds or "refunded" in lines:
        flags.add(F.PARTIALLY_REFUNDED)
    return [f for f in F if f in flags]
