"""The pgqueuer peer (pgqueuer 1.6): a trigger on `invoices` enqueues one job per (change,
subscription) the way pgqueuer's own enqueue writes them (a `pgqueuer` row plus its
`pgqueuer_log` row; pgqueuer's statement trigger NOTIFYs the worker); the worker runs each job
through bench/peers/delivery.py.

Tuned as pgqueuer's performance guide recommends for short jobs: a larger `batch_size`, a
`max_concurrent_tasks` ceiling of twice it, the QueueManager on a dedicated connection (its
LISTEN), a pool for the jobs' queries, durable tables (the default, as hookql's are), and its
autovacuum settings for the queue table.

Run: `python -m bench.peers.pgqueuer_worker DATABASE_URL` (prints READY when it takes jobs)."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import asyncpg

BATCH_SIZE = 25  # jobs per dequeue round trip: the guide's example for jobs well under 1 s
MAX_CONCURRENT_TASKS = 2 * BATCH_SIZE  # pgqueuer requires at least twice the batch
DEQUEUE_TIMEOUT = timedelta(seconds=5)  # polling fallback; NOTIFY wakes the worker first

TRIGGER_SQL = """
CREATE FUNCTION peer_enqueue_pgqueuer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH inserted AS (
        INSERT INTO pgqueuer (priority, entrypoint, payload, status)
        SELECT 0, 'deliver',
               convert_to(json_build_object('webhook_id', w.id, 'invoice_id', NEW.id)::text, 'UTF8'),
               'queued'
        FROM peer_webhooks w
        RETURNING id, entrypoint, priority
    )
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM inserted;
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_enqueue_pgqueuer AFTER UPDATE OF status ON invoices
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION peer_enqueue_pgqueuer();
"""

# `pgq autovac`'s settings for the high-churn queue table (pgqueuer's performance guide).
AUTOVACUUM_SQL = """
ALTER TABLE pgqueuer SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_limit = 10000,
                          autovacuum_vacuum_cost_delay = 0, fillfactor = 70);
"""


async def install(database_url: str) -> None:
    """pgqueuer's schema, its autovacuum settings and the enqueue trigger."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(database_url)
    try:
        await Queries(AsyncpgDriver(conn)).install()
        await conn.execute(AUTOVACUUM_SQL)
        await conn.execute(TRIGGER_SQL)
    finally:
        await conn.close()


async def work(database_url: str) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    from bench.peers.delivery import Deliverer, announce_ready, stop_on_signals

    deliverer = await Deliverer.open(database_url, MAX_CONCURRENT_TASKS)
    conn = await asyncpg.connect(database_url)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("deliver")
    async def deliver(job: Job) -> None:
        ref = json.loads(job.payload or b"{}")
        await deliverer.deliver(ref["webhook_id"], ref["invoice_id"], f"msg_pgq_{job.id}")

    stop_on_signals(pgq.shutdown)
    announce_ready()
    try:
        await pgq.run(batch_size=BATCH_SIZE, max_concurrent_tasks=MAX_CONCURRENT_TASKS, dequeue_timeout=DEQUEUE_TIMEOUT)
    finally:
        await deliverer.close()
        await conn.close()


if __name__ == "__main__":
    from app import runtime

    runtime.run(work(sys.argv[1]))
