"""Status enums: GraphQL names upper-case, database values lower-case (the CHECK constraints)."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum
class OrderStatus(enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


@strawberry.enum
class InvoiceStatus(enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


@strawberry.enum
class LineItemStatus(enum.Enum):
    PENDING = "pending"
    ALLOCATED = "allocated"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


@strawberry.enum
class ShipmentStatus(enum.Enum):
    PENDING = "pending"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    RETURNED = "returned"


@strawberry.enum
class RefundRequestStatus(enum.Enum):
    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


@strawberry.enum
class RefundRequestLineItemStatus(enum.Enum):
    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    REFUNDED = "refunded"
