"""A test-only GraphQL schema whose resolvers wait on a gate, nap or resolve many fields, for the
evaluation budgets' tests (unit/test_evaluation_runs.py, integration/test_evaluation_budgets.py).
`context` carries `gate` (an asyncio.Event), `started` and `resolved_after_gate` counters."""

from __future__ import annotations

import asyncio

import strawberry
from graphql import parse

from app.evaluation.compile import CompiledQuery
from app.evaluation.cost import measure
from app.types import EntityType


@strawberry.type
class Detail:
    @strawberry.field
    def n(self, info: strawberry.Info) -> int:
        info.context["resolved_after_gate"] += 1
        return 1


@strawberry.type
class SlowInvoice:
    id: strawberry.ID

    @strawberry.field
    async def slow(self, info: strawberry.Info) -> Detail:
        info.context["started"] += 1
        await info.context["gate"].wait()
        return Detail()

    @strawberry.field
    def fast(self) -> int:
        return 7

    @strawberry.field
    async def nap(self) -> Detail:
        await asyncio.sleep(0.05)
        return Detail()

    @strawberry.field
    async def many(self) -> list[Detail]:
        return [Detail() for _ in range(200_000)]


@strawberry.type
class SlowQuery:
    @strawberry.field
    def invoice(self, id: strawberry.ID) -> SlowInvoice:
        return SlowInvoice(id=id)


# A test-only schema whose resolver waits (the engine receives its schema as an argument): a run
# that is waiting on I/O resolves nothing, so only its waiter can notice its budget is spent.
SLOW_SCHEMA = strawberry.Schema(query=SlowQuery)


def slow_query(text: str) -> CompiledQuery:
    document = parse(text)
    cost = measure(SLOW_SCHEMA._schema, document, None, {"id": "x"}, max_work=1_000_000)
    return CompiledQuery(text, EntityType.INVOICE, document, cost)

