"""What checking the request deadline costs a large, legitimate query: CPU time of the same
execution with strawberry's executor, with app.api.deadline.DeadlineExecutor (with and without a
deadline in the context; the clock read every CHECK_EVERY-th object, or every object), and with
the placement not taken, a field middleware (a strawberry extension's `resolve`), in-process on
uvloop. The variants run in an order of their own each round, each after a full collection;
medians are reported, from fresh DataLoaders (SQL) and from warm ones (the execution alone).
Run it to choose where (and how often) the deadline is checked.

    python scripts/deadline_overhead.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It makes a database of its own on that server (the sample marketplace from fixtures/) and drops
it afterwards. Numbers from a machine others are using are noisy: compare the variants of one
run. One run on a shared 2-core machine (151 rounds; 4,582 field resolutions and 1,351 object
completions a run), CPU medians against strawberry's executor, fresh loaders / warm loaders:

    DeadlineExecutor, no deadline              +0.4 % / +0.9 %
    DeadlineExecutor, clock 1 object in 8      +2.9 % / +3.8 %   (the one hookql uses)
    DeadlineExecutor, clock every object       +3.7 % / +4.0 %
    field middleware, clock 1 field in 32      +5.6 % / +6.6 %

The differences are about the size of the noise (a variant run twice differs by 1-2 %), but
their order held in every run: a field middleware costs a call on every resolution whatever
share of them reads the clock; the executor's check, one on every object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app import runtime
from app.api import deadline as deadline_module
from app.api.context import Context, make_context
from app.api.deadline import Deadline, DeadlineExecutor
from app.api.schema import schema
from app.store import db
from app.store.fixtures import load_fixtures
from app.types import OPERATOR

# The operator's 100 invoices of the sample data with their line items, variants and shipments.
QUERY = """query {
  invoices(first: 100) {
    nodes {
      id legacyId status currency createdAt updatedAt
      total { amount currencyCode } subtotal { amount currencyCode }
      lineItems { id quantity status unitPrice { amount currencyCode } variant { id sku barcode price { amount } } }
      shipments { id status carrier trackingNumber }
    }
  }
}"""
FIELD_CHECK_EVERY = 32  # the field middleware's clock: every 32nd resolution


class FieldCheck(SchemaExtension):
    """The placement not taken: the deadline checked as every field resolves."""

    def __init__(self, *, execution_context: Any = None) -> None:
        self.deadline: Deadline | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._checks = 0

    def on_execute(self) -> Any:
        self.deadline = getattr(self.execution_context.context, "deadline", None)
        self._clock = asyncio.get_running_loop().time
        yield

    def resolve(self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        deadline = self.deadline
        if deadline is None:
            return _next(root, info, *args, **kwargs)
        self._checks += 1
        if not self._checks & (FIELD_CHECK_EVERY - 1) and not deadline.expired and self._clock() >= deadline.at:
            deadline.expire()
        if deadline.expired:
            raise RuntimeError("the deadline passed")  # never here: it is a day away
        return _next(root, info, *args, **kwargs)


class _CountResolutions(SchemaExtension):
    count = 0

    def resolve(self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        _CountResolutions.count += 1
        return _next(root, info, *args, **kwargs)


class _CountObjects(StrawberryGraphQLCoreExecutionContext):
    count = 0

    def complete_object_value(self, *args: Any, **kwargs: Any) -> Any:
        _CountObjects.count += 1
        return super().complete_object_value(*args, **kwargs)


async def _size(pool: asyncpg.Pool) -> tuple[int, int]:
    """Field resolutions and object completions of one run."""
    extensions, executor = schema.extensions, schema.execution_context_class
    schema.extensions, schema.execution_context_class = (*extensions, _CountResolutions), _CountObjects
    try:
        result = await schema.execute(QUERY, context_value=make_context(pool, OPERATOR))
    finally:
        schema.extensions, schema.execution_context_class = extensions, executor
    assert not result.errors, result.errors
    return _CountResolutions.count, _CountObjects.count


async def _cpu_ms(context: Context) -> float:
    started = time.process_time()
    result = await schema.execute(QUERY, context_value=context)
    took = (time.process_time() - started) * 1000
    assert not result.errors, result.errors
    return took


def _context(pool: asyncpg.Pool, with_deadline: bool, warm: dict[bool, Context] | None) -> Context:
    """A fresh context (its loaders run SQL), or one whose loaders already hold every row
    (`warm`: the execution alone)."""
    if warm is not None and with_deadline in warm:
        return warm[with_deadline]
    context = make_context(pool, OPERATOR)
    if with_deadline:
        context.deadline = Deadline(asyncio.get_running_loop().time() + 24 * 3600)  # never reached
    if warm is not None:
        warm[with_deadline] = context
    return context


async def _measure(pool: asyncpg.Pool, rounds: int) -> None:
    resolutions, objects = await _size(pool)
    print(f"{resolutions:,} field resolutions and {objects:,} object completions a run; {rounds} rounds")
    every = deadline_module.CHECK_EVERY
    extensions = schema.extensions
    # label: (executor class, extra extension, whether the context carries a deadline, CHECK_EVERY)
    variants: dict[str, tuple[type, type | None, bool, int]] = {
        "strawberry's executor": (StrawberryGraphQLCoreExecutionContext, None, False, every),
        "DeadlineExecutor, no deadline": (DeadlineExecutor, None, False, every),
        f"DeadlineExecutor, clock 1 object in {every}": (DeadlineExecutor, None, True, every),
        "DeadlineExecutor, clock every object": (DeadlineExecutor, None, True, 1),
        f"field middleware, clock 1 field in {FIELD_CHECK_EVERY}": (
            StrawberryGraphQLCoreExecutionContext, FieldCheck, True, every
        ),
    }
    for caches in ("fresh loaders (SQL)", "warm loaders (no SQL)"):
        warm: dict[bool, Context] | None = {} if caches.startswith("warm") else None
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        try:
            for round_ in range(rounds + 3):  # the first 3: warm-up
                # In an order of its own each round, after a full collection: a collection that a
                # fixed order would set off in the same variant every round is not that variant's cost.
                for label in random.sample(list(variants), len(variants)):
                    executor, extension, with_deadline, check_every = variants[label]
                    schema.execution_context_class = executor
                    schema.extensions = (*extensions, extension) if extension else extensions
                    deadline_module.CHECK_EVERY = check_every
                    gc.collect()
                    took = await _cpu_ms(_context(pool, with_deadline, warm))
                    if round_ >= 3:
                        cpu[label].append(took)
        finally:
            schema.execution_context_class = DeadlineExecutor
            schema.extensions, deadline_module.CHECK_EVERY = extensions, every
        print(f"-- {caches}")
        base = statistics.median(cpu["strawberry's executor"])
        for label, values in cpu.items():
            median = statistics.median(values)
            print(f"{label:42} {median:7.2f} ms CPU  {median - base:+5.2f} ms  {100 * (median / base - 1):+5.1f} %")


async def main(server_url: str, rounds: int) -> None:
    name = f"hookql_deadline_overhead_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = db.with_database(server_url, name)
        conn = await db.connect(url)
        try:
            await db.migrate(conn)
            await load_fixtures(conn)
        finally:
            await conn.close()
        pool = await db.create_pool(url, max_size=20)
        try:
            await _measure(pool, rounds)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (its postgres database)")
    parser.add_argument("--rounds", type=int, default=101)
    args = parser.parse_args()
    runtime.run(main(args.database_url, args.rounds))
