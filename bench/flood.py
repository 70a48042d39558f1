"""A request flood from one API key, in a process of its own so that its CPU never delays the
bench's clocks: `python -m bench.flood URL KEY --clients N --seconds S`. Each client sends its
next request as soon as the previous one is answered, as a hostile client does (a 429's
Retry-After is not honoured). Bounded in time and in count; prints one JSON line: requests sent,
answers counted by status, the slowest answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

from app import runtime

MAX_REQUESTS = 200_000  # a bound on the loop, far above what one key gets answered in a window
REQUEST_TIMEOUT_S = 10.0
# The costliest read of this shape within a seller key's default cost limit (~4,400 of 5,000): a
# page of invoices with their lines, variants and products.
QUERY = (
    "{ invoices(first: 35) { nodes { id status total { amount }"
    " lineItems { quantity variant { sku product { title } } } } } }"
)


async def flood(url: str, key: str, *, clients: int, seconds: float) -> dict[str, Any]:
    """Flood for `seconds`; requests still unanswered then are abandoned and counted as such."""
    answers: Counter[str] = Counter()
    sent = 0
    slowest_s = 0.0
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:

        async def client() -> None:
            nonlocal sent, slowest_s
            while sent < MAX_REQUESTS:
                sent += 1
                started = time.monotonic()
                try:
                    async with session.post(url, json={"query": QUERY}, headers=headers) as resp:
                        await resp.read()
                        answers[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    answers[type(exc).__name__] += 1
                slowest_s = max(slowest_s, time.monotonic() - started)

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    unanswered = sent - sum(answers.values())
    if unanswered:
        answers["unanswered"] = unanswered
    return {"requests": sent, "answers": dict(answers), "slowest_s": round(slowest_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description="a request flood from one API key")
    parser.add_argument("url", help="the /graphql URL")
    parser.add_argument("key")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    result = runtime.run(flood(args.url, args.key, clients=args.clients, seconds=args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
