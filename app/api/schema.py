"""The GraphQL schema: the marketplace, webhooks and the live event stream, merged."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from app.api.marketplace import (
    Invoice,
    InvoiceAmendment,
    InvoiceLineItem,
    Order,
    Product,
    RefundRequest,
    RefundRequestLineItem,
    Seller,
    Shipment,
    ShipmentItem,
    Variant,
)
from app.api.query import MarketplaceQuery
from app.api.subscriptions import WebhookSubscription
from app.api.webhooks import WebhookMutation, WebhookQuery

Query = merge_types("Query", (MarketplaceQuery, WebhookQuery))
Mutation = merge_types("Mutation", (WebhookMutation,))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=WebhookSubscription,
    # Every Node type, so `... on Shipment` works even where no field returns one directly.
    types=[
        Seller,
        Product,
        Variant,
        Order,
        Invoice,
        InvoiceLineItem,
        Shipment,
        ShipmentItem,
        InvoiceAmendment,
        RefundRequest,
        RefundRequestLineItem,
    ],
)


def print_sdl() -> str:
    return schema.as_str() + "\n"
