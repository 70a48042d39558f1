"""Every GraphQL document the API receives is measured (app.evaluation.cost) and refused over its key's
limits after parsing and before validation or execution: the refusal costs one bounded walk.

A document within the limits is then paid for from its key's cost bucket (app.policy.quotas), as
Shopify's GraphQL Admin API does: the estimate (`requestedQueryCost`) is taken before it runs, a
key whose bucket holds less is THROTTLED (HTTP 429 with Retry-After, app.api.asgi), and after it
ran what it did not return flows back (`actualQueryCost`: the objects and values in `data`).
Every answer to a key says so in `extensions.cost`, with the bucket's `throttleStatus`.
Subscriptions are not charged: they are counted by key_max_subscriptions instead.

A SchemaExtension rather than a validation rule, because graphql-core's validation of a large
document is itself the expensive step (overlapping-fields checks): the limits hold before it runs,
and a refused document skips it. The engine executes with graphql-core directly and never comes
here; webhook queries are checked with their owner's limits in app.evaluation.compile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter, SchemaExtension
from strawberry.types.graphql import OperationType

from app.api.context import Context
from app.config import Settings
from app.evaluation.cost import MAX_TOKENS, Limits, check, limits_for, measure, returned
from app.policy.quotas import THROTTLED, CostBucket, KeyQuotas, Refusal

ERROR_CODE = "QUERY_TOO_COSTLY"


class KeyBudget:
    """One API key's cost bucket, as one HTTP request (or one websocket connection) sees it: the
    view makes it, the context carries it, CostLimit charges it. `throttled` keeps the refusal of
    the last document it could not pay for, for the view's 429 and Retry-After."""

    def __init__(self, quotas: KeyQuotas[bytes], key_hash: bytes, bucket: CostBucket) -> None:
        self.quotas = quotas
        self.key_hash = key_hash  # as api_keys stores it (app.store.apikeys.hash_key)
        self.bucket = bucket
        self.throttled: Refusal | None = None

    def charge(self, cost: int) -> Refusal | None:
        refusal = self.quotas.charge(self.key_hash, cost, time.monotonic(), self.bucket)
        self.throttled = refusal
        return refusal

    def refund(self, points: int) -> None:
        self.quotas.refund(self.key_hash, points, time.monotonic())

    def status(self) -> dict[str, int]:
        return self.quotas.status(self.key_hash, time.monotonic(), self.bucket).as_dict()


class DocumentTokens(MaxTokensLimiter):
    """Parse at most MAX_TOKENS tokens: parsing runs before any cost is known."""

    def __init__(self) -> None:
        super().__init__(MAX_TOKENS)

    def on_parse(self) -> Iterator[None]:
        yield
        # graphql-core's own words ("Syntax Error: Document contains more than 5000 tokens")
        # read like a typo in the document; say which limit it is, as the cost refusal does.
        for error in self.execution_context.pre_execution_errors or ():
            if "tokens. Parsing aborted" in error.message:
                error.message = (
                    f"the document has more than {MAX_TOKENS:,} tokens, this API's limit; send a smaller document"
                )
                error.extensions = {"code": ERROR_CODE, "limit": {"maxTokens": MAX_TOKENS}}


class CostLimit(SchemaExtension):
    """Refuse a query, mutation or subscription over its key's depth, alias or cost limit with
    `extensions.code` QUERY_TOO_COSTLY, the cost measured and the limits (HTTP 400 over HTTP);
    charge a query or mutation within them to its key's budget (THROTTLED when it cannot pay)."""

    def __init__(self, *, execution_context: Any = None) -> None:
        # strawberry makes one instance per operation and sets `execution_context` itself
        self.charged = 0  # points taken from the key's bucket for this document, until settled
        self.report: dict[str, Any] | None = None  # `extensions.cost` of the answer

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.graphql_document is not None and not ec.pre_execution_errors:
            limits = _limits(ec.context)
            cost = measure(
                ec.schema._schema, ec.graphql_document, ec.operation_name, ec.variables, max_work=limits.max_cost
            )
            problem = check(cost, limits)
            budget = ec.context.budget if isinstance(ec.context, Context) else None
            if problem:
                # strawberry skips validation and execution once pre-execution errors are set
                ec.pre_execution_errors = [
                    GraphQLError(
                        problem,
                        extensions={"code": ERROR_CODE, "cost": cost.as_dict(), "limit": limits.as_dict()},
                    )
                ]
            elif budget is not None and ec.operation_type is not OperationType.SUBSCRIPTION:
                self._charge(budget, cost.nodes)
        yield

    def _charge(self, budget: KeyBudget, requested: int) -> None:
        refusal = budget.charge(requested)
        self.report = {"requestedQueryCost": requested, "actualQueryCost": None}
        if refusal is None:
            self.charged = requested
            return
        self.report["throttleStatus"] = budget.status()
        self.execution_context.pre_execution_errors = [GraphQLError(refusal.message, extensions={"code": THROTTLED})]

    def get_results(self) -> dict[str, Any]:
        """Settle the charge once the document ran (or failed validation: nothing returned) and
        report it; called once per operation, after execution."""
        ec = self.execution_context
        budget = ec.context.budget if isinstance(ec.context, Context) else None
        if budget is None or self.report is None:
            return {}
        if self.charged:
            data = ec.result.data if ec.result is not None else None
            actual = returned(data, at_most=self.charged)
            budget.refund(self.charged - actual)
            self.report["actualQueryCost"] = actual
            self.report["throttleStatus"] = budget.status()
            self.charged = 0
        return {"cost": self.report}


def _limits(context: object) -> Limits:
    """The operator's limits for an operator key; a seller's for a seller key, and for anything
    not (yet) authenticated."""
    if isinstance(context, Context):
        visibility = context.visibility
        return limits_for(context.settings, operator=visibility is not None and visibility.is_operator)
    return limits_for(Settings(), operator=False)
