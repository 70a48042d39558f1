"""The procrastinate peer (procrastinate 3.10): a trigger on `invoices` defers one job per
(change, subscription) with procrastinate's own SQL entry point, `procrastinate_defer_jobs_v1`,
all of a change's jobs in one call; procrastinate's insert trigger NOTIFYs the worker, which runs
each job through bench/peers/delivery.py.

Tuned as procrastinate's documentation says for asynchronous I/O-bound tasks: `concurrency` above
1 (here 24, graphile-worker's figure, so that the peers keep as many deliveries in flight),
LISTEN/NOTIFY on (its default; polling is the fallback), and finished jobs deleted
(`delete_jobs="successful"`) so the jobs table stays small.

Run: `python -m bench.peers.procrastinate_worker DATABASE_URL` (prints READY when it takes jobs)."""

from __future__ import annotations

import sys
from typing import Any

CONCURRENCY = 24
QUEUE = "webhooks"
TASK = "deliver"

TRIGGER_SQL = f"""
CREATE FUNCTION peer_enqueue_procrastinate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW('{QUEUE}', '{TASK}', 0, NULL, NULL,
                   jsonb_build_object('webhook_id', w.id, 'invoice_id', NEW.id), NULL)::procrastinate_job_to_defer_v1
        FROM peer_webhooks w));
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_enqueue_procrastinate AFTER UPDATE OF status ON invoices
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION peer_enqueue_procrastinate();
"""


async def install(database_url: str) -> None:
    """procrastinate's schema and the enqueue trigger."""
    import asyncpg
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(TRIGGER_SQL)
    finally:
        await conn.close()


async def work(database_url: str) -> None:
    import procrastinate

    from bench.peers.delivery import Deliverer, announce_ready

    deliverer = await Deliverer.open(database_url, CONCURRENCY)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    async def deliver(context: Any, webhook_id: int, invoice_id: int) -> None:
        await deliverer.deliver(webhook_id, invoice_id, f"msg_pcr_{context.job.id}")

    try:
        async with app.open_async():
            announce_ready()
            # procrastinate stops on SIGTERM/SIGINT itself (its worker installs the handlers).
            await app.run_worker_async(
                queues=[QUEUE], concurrency=CONCURRENCY, delete_jobs="successful", listen_notify=True
            )
    finally:
        await deliverer.close()


if __name__ == "__main__":
    from app import runtime

    runtime.run(work(sys.argv[1]))
