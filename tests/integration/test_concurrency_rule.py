"""The live-concurrency rule has one statement, app.policy.retry.next_concurrency; the recorder applies it
in SQL (app.store.delivery.record_webhook_health). These tests pin the SQL to the function: each
sequence of outcome batches is recorded on a real database and the webhook's live concurrency
after every batch must equal the function's."""

import random

import asyncpg
import pytest

from app.policy.retry import next_concurrency
from app.store import delivery
from tests.support.engine_harness import add_webhook

DISABLE_AFTER_S = 10 * 86400.0  # far away: these batches never disable a webhook

Batch = tuple[int, int, int]  # (delivered, rate_limited, other failures) recorded together

CASES: list[tuple[str, int, int, list[Batch]]] = [
    # (what, configured, live at the start, batches)
    ("a 429 halves", 10, 10, [(0, 1, 0)]),
    ("429s halve down to one and stay there", 10, 10, [(0, 1, 0)] * 5),
    ("odd live rounds down", 9, 9, [(0, 1, 0)]),
    ("several 429s in one batch halve once", 16, 16, [(0, 3, 0)]),
    ("a 429 beside successes halves and the successes add nothing", 16, 16, [(5, 1, 0)]),
    ("each success adds one", 10, 1, [(1, 0, 0), (1, 0, 0), (1, 0, 0)]),
    ("a batch of successes adds them all, up to the configured", 10, 2, [(3, 0, 0), (20, 0, 0)]),
    ("at the configured, successes add nothing", 10, 10, [(4, 0, 0)]),
    ("failures alone change nothing", 10, 4, [(0, 0, 3)]),
    ("failures beside successes: the successes count", 10, 4, [(2, 0, 3)]),
    ("configured lowered below live: a success drops it to the configured", 5, 12, [(1, 0, 0)]),
    ("configured lowered below live: a failure drops it to the configured", 5, 12, [(0, 0, 1)]),
    ("configured lowered below live: a 429 halves from live", 5, 12, [(0, 1, 0)]),
    ("down and back up", 8, 8, [(0, 1, 0), (0, 1, 0), (2, 0, 1), (0, 0, 2), (9, 0, 0), (0, 2, 2), (1, 0, 0)]),
]


def _random_cases(count: int, seed: int) -> list[tuple[str, int, int, list[Batch]]]:
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        configured = rng.randint(1, 100)
        batches = [
            (rng.choice([0, 0, 1, 2, 7]), rng.choice([0, 0, 0, 1, 2]), rng.choice([0, 0, 1, 3]))
            for _ in range(rng.randint(1, 8))
        ]
        cases.append((f"random {seed}/{n}", configured, rng.randint(1, 120), batches))
    return cases


async def _live_after_each_batch(pool: asyncpg.Pool, configured: int, live: int, batches: list[Batch]) -> list[int]:
    hook_id, _ = await add_webhook(pool, "http://127.0.0.1:9/", concurrency=configured, live_concurrency=live)
    seen = []
    for delivered, rate_limited, failed in batches:
        async with pool.acquire() as conn, conn.transaction():
            [(webhook_id, enabled, after)] = await delivery.record_webhook_health(
                conn,
                {hook_id: delivery.OutcomeCounts(delivered, rate_limited, failed, gone=0)},
                [],
                DISABLE_AFTER_S,
            )
        assert (webhook_id, enabled) == (hook_id, True)
        seen.append(after)
    return seen


def _expected(configured: int, live: int, batches: list[Batch]) -> list[int]:
    out = []
    for delivered, rate_limited, _ in batches:
        live = next_concurrency(live, configured, delivered, rate_limited)
        out.append(live)
    return out


@pytest.mark.parametrize(("what", "configured", "live", "batches"), CASES, ids=[c[0] for c in CASES])
async def test_the_sql_rule_is_next_concurrency(
    pool: asyncpg.Pool, what: str, configured: int, live: int, batches: list[Batch]
) -> None:
    # given a webhook at `live` of `configured`, when each batch of outcomes is recorded,
    # then its live concurrency after each is what app.policy.retry.next_concurrency says
    assert await _live_after_each_batch(pool, configured, live, batches) == _expected(configured, live, batches), what


async def test_the_sql_rule_is_next_concurrency_on_random_sequences(pool: asyncpg.Pool) -> None:
    for what, configured, live, batches in _random_cases(40, seed=12):
        got = await _live_after_each_batch(pool, configured, live, batches)
        assert got == _expected(configured, live, batches), (what, configured, live, batches)
