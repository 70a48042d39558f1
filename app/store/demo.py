"""`hookql demo`'s statements (`app/store/sql/demo.sql`): marketplace traffic written in plain SQL,
as any application writing these tables would, and the tour's bookkeeping in its throwaway
database. The random choices are the caller's; each function here is one step of the shop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from app.store.queries import load

Q = load("demo")


@dataclass(frozen=True)
class SaleVariant:
    id: int
    price: Decimal
    currency: str
    seller_id: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> SaleVariant:
        return cls(row["id"], row["price"], row["currency"], row["seller_id"])


@dataclass(frozen=True)
class VariantRef:
    id: int
    sku: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> VariantRef:
        return cls(row["id"], row["sku"])


@dataclass(frozen=True)
class RefundableLine:
    invoice_id: int
    line_id: int
    unit_price: Decimal

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RefundableLine:
        return cls(row["invoice_id"], row["line_id"], row["unit_price"])


# --- the shop --------------------------------------------------------------------------------------


async def variants_to_sell(conn: asyncpg.Connection, limit: int) -> list[SaleVariant]:
    """Up to `limit` variants at random, with their seller."""
    return [SaleVariant.from_row(r) for r in await conn.fetch(*Q.variants_to_sell(limit=limit))]


async def place_order(
    conn: asyncpg.Connection, buyer_name: str, buyer_email: str, lines: Sequence[tuple[SaleVariant, int]]
) -> tuple[int, int]:
    """One order with one invoice, to the first line's seller in its currency, holding each
    (variant, quantity) at the variant's price; one transaction. Returns (order id, invoice id)."""
    first = lines[0][0]
    async with conn.transaction():
        order: int = await conn.fetchval(*Q.insert_order(buyer_name=buyer_name, buyer_email=buyer_email))
        invoice: int = await conn.fetchval(
            *Q.insert_invoice(order_id=order, seller_id=first.seller_id, currency=first.currency)
        )
        for variant, quantity in lines:
            await conn.execute(
                *Q.insert_line_item(
                    invoice_id=invoice, variant_id=variant.id, quantity=quantity, unit_price=variant.price
                )
            )
    return order, invoice


async def any_invoice_in_status(conn: asyncpg.Connection, status: str) -> int | None:
    """The id of a random invoice in `status`, or None if there is none."""
    invoice_id: int | None = await conn.fetchval(*Q.any_invoice_in_status(status=status))
    return invoice_id


async def set_invoice_status(conn: asyncpg.Connection, invoice_id: int, status: str) -> None:
    await conn.execute(*Q.set_invoice_status(invoice_id=invoice_id, status=status))


async def ship_invoice(conn: asyncpg.Connection, invoice_id: int, tracking_number: str) -> None:
    """Ship every line of the invoice, as a burst of writes to one invoice within milliseconds:
    the shipment and its items (one transaction), then the lines' status, then the invoice's."""
    async with conn.transaction():
        shipment = await conn.fetchval(*Q.insert_shipment(invoice_id=invoice_id, tracking_number=tracking_number))
        await conn.execute(*Q.ship_every_line(shipment_id=shipment, invoice_id=invoice_id))
    await conn.execute(*Q.mark_lines_shipped(invoice_id=invoice_id))
    await set_invoice_status(conn, invoice_id, "shipped")


async def any_refundable_line(conn: asyncpg.Connection) -> RefundableLine | None:
    """A random line of a paid or shipped invoice, or None."""
    row = await conn.fetchrow(*Q.any_refundable_line())
    return None if row is None else RefundableLine.from_row(row)


async def request_refund(conn: asyncpg.Connection, line: RefundableLine, reason: str) -> None:
    """A refund request for one unit of the line, at its unit price; one transaction."""
    async with conn.transaction():
        request = await conn.fetchval(*Q.insert_refund_request(invoice_id=line.invoice_id, reason=reason))
        await conn.execute(
            *Q.insert_refund_line(refund_request_id=request, line_id=line.line_id, amount=line.unit_price)
        )


async def any_variant(
    conn: asyncpg.Connection, *, stocked: bool, excluded_ids: Sequence[int] = ()
) -> VariantRef | None:
    """A random variant (with a finite stock and not one of `excluded_ids`, if `stocked`), or None."""
    query = Q.any_stocked_variant(excluded_ids=list(excluded_ids)) if stocked else Q.any_variant()
    row = await conn.fetchrow(*query)
    return None if row is None else VariantRef.from_row(row)


async def variant_known_to(conn: asyncpg.Connection, webhook_id: int) -> VariantRef | None:
    """A random variant whose latest state the webhook has been sent, with nothing under way for
    it, or None (the webhook has not been sent any yet)."""
    row = await conn.fetchrow(*Q.variant_known_to(webhook_id=webhook_id))
    return None if row is None else VariantRef.from_row(row)


async def change_stock(conn: asyncpg.Connection, variant_id: int, delta: int) -> None:
    """Add `delta` to the stock on hand, never below zero."""
    await conn.execute(*Q.change_stock(variant_id=variant_id, delta=delta))


async def raise_price(conn: asyncpg.Connection, variant_id: int) -> None:
    """Raise the price by 5 %."""
    await conn.execute(*Q.raise_price(variant_id=variant_id))


# --- the tour's bookkeeping ------------------------------------------------------------------------


async def start_counting_changes(conn: asyncpg.Connection) -> None:
    """Count, from now on, the changes of each entity type that the capture triggers record, and
    forget those captured so far (the fixtures are not news)."""
    await conn.execute(*Q.install_change_counts())
    await conn.execute(*Q.forget_changes())


async def changes_captured(conn: asyncpg.Connection) -> int:
    """The changes counted since `start_counting_changes`."""
    return int(await conn.fetchval(*Q.changes_captured()))


async def watched_changes_captured(conn: asyncpg.Connection) -> int:
    """Of those, the changes of an entity type some webhook watches."""
    return int(await conn.fetchval(*Q.watched_changes_captured()))


async def events_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await conn.fetch(*Q.events_by_status())}


async def pending_events(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(*Q.pending_events()))


@dataclass(frozen=True)
class UnsentEvent:
    """An event that ended without a request: its sequence number is a gap the receiver sees."""

    id: int
    webhook: str  # the webhook's name
    event: str
    sequence: int
    status: str  # skipped | superseded
    superseded_by_sequence: int | None
    entity: str  # a variant's SKU, else "invoice #12"

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UnsentEvent:
        return cls(row["id"], row["webhook"], row["event"], row["sequence"], row["status"],
                   row["superseded_by_sequence"], row["entity"] or "")


async def unsent_events(conn: asyncpg.Connection, reported_ids: Sequence[int]) -> list[UnsentEvent]:
    """The skipped and superseded events not among `reported_ids`, oldest first."""
    return [UnsentEvent.from_row(r) for r in await conn.fetch(*Q.unsent_events(reported_ids=list(reported_ids)))]


async def drained(conn: asyncpg.Connection) -> bool:
    """Nothing captured, debouncing or waiting for delivery."""
    return bool(await conn.fetchval(*Q.drained()))
