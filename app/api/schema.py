"""The GraphQL schema: the marketplace, webhooks and the live event stream, merged."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.tools import merge_types

from app.api.cost_limit import CostLimit, DocumentTokens
from app.api.deadline import DeadlineExecutor
from app.api.http_operations import SubscriptionsOverWebsocket
from app.api.listen import ListenMutation, ListenSubscription
from app.api.marketplace.catalog import Product, Seller, Variant
from app.api.marketplace.invoicing import Invoice, InvoiceAmendment, InvoiceLineItem
from app.api.marketplace.orders import Order
from app.api.marketplace.refunds import RefundRequest, RefundRequestLineItem
from app.api.marketplace.shipping import Shipment, ShipmentItem
from app.api.query import MarketplaceQuery
from app.api.subscriptions import WebhookSubscription
from app.api.webhooks import WebhookMutation, WebhookQuery

Query = merge_types("Query", (MarketplaceQuery, WebhookQuery))
Mutation = merge_types("Mutation", (WebhookMutation, ListenMutation))
Subscription = merge_types("Subscription", (WebhookSubscription, ListenSubscription))

log = logging.getLogger("hookql.graphql")


class HookqlSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Syntax, validation, variable-coercion and argument errors are answers to the client, not
        # server faults: only unexpected exceptions inside resolvers are logged as errors.
        for error in errors:
            original = error.original_error
            # (CannotGetOperationTypeError: an operationName the document lacks, over a websocket.)
            expected = ValueError | PermissionError | GraphQLError | CannotGetOperationTypeError
            if original is not None and not isinstance(original, expected):
                log.error("resolver failed at %s", error.path, exc_info=original)


schema = HookqlSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
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
    # Per request: a bounded parse, then the document's cost against the key's limits.
    extensions=[DocumentTokens, CostLimit, SubscriptionsOverWebsocket],
    # While it executes, its deadline (an HTTP request's).
    execution_context_class=DeadlineExecutor,
)


def print_sdl() -> str:
    return schema.as_str() + "\n"
