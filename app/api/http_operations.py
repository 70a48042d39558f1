"""Which operations plain HTTP carries: queries and mutations. strawberry would also run a
`subscription` sent by POST (for its multipart streaming protocol), but hookql's live stream is
served over websockets only (graphql-transport-ws, graphql-ws), so over HTTP a subscription is a
clear 400 before anything runs — not a null result and a logged TypeError."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.api.context import Context

ERROR_CODE = "SUBSCRIPTION_NEEDS_WEBSOCKET"


class SubscriptionsOverWebsocket(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.graphql_document is not None and not ec.pre_execution_errors:
            context = ec.context
            over_http = isinstance(context, Context) and context.request is not None and not isinstance(
                context.request, WebSocket
            )
            try:
                is_subscription = ec.operation_type is OperationType.SUBSCRIPTION
            except Exception:  # no such operation: graphql-core's validation says so next
                is_subscription = False
            if over_http and is_subscription:
                ec.pre_execution_errors = [
                    GraphQLError(
                        "subscriptions are served over a websocket (graphql-transport-ws or graphql-ws) at /graphql,"
                        " not over plain HTTP",
                        extensions={"code": ERROR_CODE},
                    )
                ]
        yield
