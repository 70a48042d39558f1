"""Every GraphQL document the API receives is measured (app.evaluation.cost) and refused over its key's
limits after parsing and before validation or execution: the refusal costs one bounded walk.

A SchemaExtension rather than a validation rule, because graphql-core's validation of a large
document is itself the expensive step (overlapping-fields checks): the limits hold before it runs,
and a refused document skips it. The engine executes with graphql-core directly and never comes
here; webhook queries are checked with their owner's limits in app.evaluation.compile."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter, SchemaExtension

from app.api.context import Context
from app.config import Settings
from app.evaluation.cost import MAX_TOKENS, Limits, check, limits_for, measure

ERROR_CODE = "QUERY_TOO_COSTLY"


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
    `extensions.code` QUERY_TOO_COSTLY, the cost measured and the limits (HTTP 400 over HTTP)."""

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.graphql_document is not None and not ec.pre_execution_errors:
            limits = _limits(ec.context)
            cost = measure(
                ec.schema._schema, ec.graphql_document, ec.operation_name, ec.variables, max_work=limits.max_cost
            )
            problem = check(cost, limits)
            if problem:
                # strawberry skips validation and execution once pre-execution errors are set
                ec.pre_execution_errors = [
                    GraphQLError(
                        problem,
                        extensions={"code": ERROR_CODE, "cost": cost.as_dict(), "limit": limits.as_dict()},
                    )
                ]
        yield


def _limits(context: object) -> Limits:
    """The operator's limits for an operator key; a seller's for a seller key, and for anything
    not (yet) authenticated."""
    if isinstance(context, Context):
        visibility = context.visibility
        return limits_for(context.settings, operator=visibility is not None and visibility.is_operator)
    return limits_for(Settings(), operator=False)
