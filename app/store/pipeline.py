"""Every SQL statement the engine runs: folding changes, claiming entities and events, recording
outcomes. Set-based (unnest arrays), so a batch costs a fixed number of statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

INGEST_LOCK_KEY = 0x686B716C01  # one ingester at a time keeps folding in commit order
CLAIM_LOCK_KEY = 0x686B716C02  # claims serialize across processes; sending does not
CHANGES_CHANNEL = "hookql_changes"
# What a database restart or outage looks like from here: retry after a pause, never give up.
# (An administrator's shutdown arrives as OperatorInterventionError, not as a connection error.)
DB_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.OperatorInterventionError)
EVENTS_CHANNEL = "hookql_events"


async def try_ingest_lock(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", INGEST_LOCK_KEY))


async def take_changes(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "DELETE FROM changes WHERE id IN (SELECT id FROM changes ORDER BY id LIMIT $1) "
            "RETURNING id, entity_type, entity_id, action, seller_id, changed_at, statement_timestamp() AS taken_at",
            limit,
        )
    )


async def lock_pending(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM pending_entities WHERE (entity_type, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::bigint[])) ORDER BY entity_type, entity_id FOR UPDATE",
            types,
            ids,
        )
    )


async def upsert_pending(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """rows: (entity_type, entity_id, action, seller_id, first_change_at, last_change_at, due_at)."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO pending_entities (entity_type, entity_id, action, seller_id, first_change_at, "
        "last_change_at, due_at) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], "
        "$5::timestamptz[], $6::timestamptz[], $7::timestamptz[]) "
        "ON CONFLICT (entity_type, entity_id) DO UPDATE SET action = EXCLUDED.action, "
        "seller_id = coalesce(EXCLUDED.seller_id, pending_entities.seller_id), "
        "first_change_at = EXCLUDED.first_change_at, last_change_at = EXCLUDED.last_change_at, "
        "due_at = EXCLUDED.due_at, version = pending_entities.version + 1",
        *[list(c) for c in columns],
    )


async def delete_pending(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> None:
    if types:
        await conn.execute(
            "DELETE FROM pending_entities WHERE (entity_type, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::bigint[]))",
            types,
            ids,
        )


async def claim_due_entities(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "UPDATE pending_entities p SET claimed_until = now() + make_interval(secs => $2) "
            "FROM (SELECT entity_type, entity_id FROM pending_entities WHERE due_at <= now() "
            "      AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY due_at LIMIT $1 "
            "      FOR UPDATE SKIP LOCKED) d "
            "WHERE p.entity_type = d.entity_type AND p.entity_id = d.entity_id RETURNING p.*",
            limit,
            lease_s,
        )
    )


async def next_entity_due_in_s(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next unclaimed entity is due (negative: overdue), or None."""
    due = await conn.fetchval(
        "SELECT extract(epoch FROM min(due_at) - now()) FROM pending_entities "
        "WHERE claimed_until IS NULL OR claimed_until < now()"
    )
    return None if due is None else float(due)


async def enabled_webhooks(conn: asyncpg.Connection, types: list[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, seller_id, entity_type, query, events, skip_identical_payloads, budget_breaches FROM webhooks "
            "WHERE enabled AND entity_type = ANY($1::text[]) ORDER BY id",
            types,
        )
    )


async def current_versions(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> list[asyncpg.Record]:
    """The claimed rows, locked for the rest of the transaction (an ingest waits, then sees the
    outcome: a row removed here is re-created by the newer change). Locked in key order, as
    `lock_pending` locks them: the ingest and evaluate loops run concurrently."""
    return list(
        await conn.fetch(
            "SELECT entity_type, entity_id, version, action, last_change_at FROM pending_entities "
            "WHERE (entity_type, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::bigint[])) ORDER BY entity_type, entity_id FOR UPDATE",
            types,
            ids,
        )
    )


async def release_claims(conn: asyncpg.Connection, types: list[str], ids: list[int]) -> None:
    if types:
        await conn.execute(
            "UPDATE pending_entities SET claimed_until = NULL WHERE (entity_type, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::bigint[]))",
            types,
            ids,
        )


# What a delivery attempt needs of its webhook: read with the event by a claim, and by enqueueing
# when it hands fresh events straight to this process's dispatcher (`lock_webhooks_for_handoff`).
DELIVERY_WEBHOOK_COLUMNS = (
    "url", "method", "format", "headers", "secret", "previous_secret", "previous_secret_expires_at",
    "timeout_seconds", "max_attempts", "concurrency", "live_concurrency", "failing_since", "seller_id",
)


def _webhook_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in DELIVERY_WEBHOOK_COLUMNS)


async def lock_webhooks(conn: asyncpg.Connection, webhook_ids: list[int]) -> None:
    """Lock webhook rows in id order. Every transaction that updates both webhooks and their
    events (enqueueing, recording outcomes) takes these first, so they cannot deadlock."""
    if webhook_ids:
        await conn.execute(
            "SELECT 1 FROM webhooks WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE", webhook_ids)


async def lock_webhooks_for_handoff(conn: asyncpg.Connection, webhook_ids: list[int]) -> list[asyncpg.Record]:
    """`lock_webhooks`, returning what a hand-off needs: each webhook's delivery configuration,
    whether it is enabled, and how many events are leased (held by some process): its own
    (`leased`) and its owner's over all the owner's webhooks (`owner_leased`; the owner is the
    seller, or the operator)."""
    if not webhook_ids:
        return []
    return list(
        await conn.fetch(
            "WITH w AS (SELECT * FROM webhooks WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE), "
            # The leased events of these webhooks' owners, as a claim counts them (the operator is owner 0).
            "owners AS MATERIALIZED (SELECT coalesce(o.seller_id, 0) AS owner, count(*) AS n "
            "    FROM webhooks o JOIN webhook_events e ON e.webhook_id = o.id "
            "    AND e.leased_until IS NOT NULL AND e.leased_until > now() "
            "    WHERE coalesce(o.seller_id, 0) IN (SELECT coalesce(seller_id, 0) FROM w) GROUP BY 1) "
            f"SELECT w.id, w.enabled, {_webhook_columns('w')}, "
            "(SELECT count(*) FROM webhook_events e WHERE e.webhook_id = w.id AND e.leased_until > now()) AS leased, "
            "coalesce(owners.n, 0) AS owner_leased "
            "FROM w LEFT JOIN owners ON owners.owner = coalesce(w.seller_id, 0)",
            webhook_ids,
        )
    )


async def supersede(
    conn: asyncpg.Connection, webhook_ids: list[int], types: list[str], ids: list[int]
) -> list[asyncpg.Record]:
    """Mark older pending events of these pairs superseded; return their retry clocks."""
    return list(
        await conn.fetch(
            # Rows locked in id order, as recording locks them: the two cannot deadlock.
            "UPDATE webhook_events e SET status = 'superseded', finished_at = now() "
            "FROM (SELECT x.id FROM unnest($1::bigint[], $2::text[], $3::bigint[]) u(w, t, i) "
            "      JOIN webhook_events x ON x.status = 'pending' AND x.webhook_id = u.w AND x.entity_type = u.t "
            "      AND x.entity_id = u.i ORDER BY x.id FOR NO KEY UPDATE OF x) s "
            "WHERE e.id = s.id AND e.status = 'pending' "
            "RETURNING e.id, e.webhook_id, e.entity_type, e.entity_id, e.attempts, e.next_attempt_at",
            webhook_ids,
            types,
            ids,
        )
    )


async def reserve_and_read_hashes(
    conn: asyncpg.Connection, counts: dict[int, int], keys: list[tuple[int, str, int]]
) -> tuple[dict[int, int], dict[tuple[int, str, int], bytes | None]]:
    """Reserve `counts[w]` sequence numbers per webhook (returns the first of each range) and read
    the last enqueued payload hash of these (webhook, entity) keys, in one round trip. Call after
    `lock_webhooks`: this statement's snapshot then sees every hash a recorder reset before."""
    rows = await conn.fetch(
        "WITH seq AS (UPDATE webhooks w SET last_sequence = w.last_sequence + c.n "
        "             FROM unnest($1::bigint[], $2::int[]) c(id, n) WHERE w.id = c.id "
        "             RETURNING w.id, w.last_sequence - c.n + 1 AS first) "
        "SELECT id AS webhook_id, NULL::text AS entity_type, NULL::bigint AS entity_id, first, NULL::bytea AS hash "
        "FROM seq UNION ALL "
        "SELECT s.webhook_id, s.entity_type, s.entity_id, NULL, s.last_payload_hash FROM webhook_entity_state s "
        "JOIN unnest($3::bigint[], $4::text[], $5::bigint[]) u(w, t, i) "
        "ON s.webhook_id = u.w AND s.entity_type = u.t AND s.entity_id = u.i",
        list(counts),
        list(counts.values()),
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    firsts = {r["webhook_id"]: r["first"] for r in rows if r["entity_type"] is None}
    hashes = {(r["webhook_id"], r["entity_type"], r["entity_id"]): r["hash"] for r in rows if r["entity_type"]}
    return firsts, hashes


async def finish_enqueue(
    conn: asyncpg.Connection,
    rows: list[tuple[Any, ...]],
    lease_s: float,
    superseded: list[int],
    hashes: list[tuple[int, str, int, bytes]],
    done: list[tuple[str, int]],
    moved: list[tuple[str, int, datetime, datetime]],
) -> dict[str, int]:
    """The rest of an enqueue, in one round trip (its parts write disjoint rows): insert the
    events, link the events they `superseded` to them, remember the `hashes` of the payloads
    enqueued (webhook, type, id, hash), delete the entities evaluated (`done`), release the
    claims of those changed meanwhile (`moved`: type, id, new first change time, new due time;
    still pending for their newer changes), and wake dispatchers if an event is left to a claim.

    rows: (public_id, webhook_id, entity_type, entity_id, event, sequence, status, payload JSON
    text, payload_hash, changed_at, attempts, next_attempt_at, finished, lease). An event with
    `lease` set is inserted leased for `lease_s`, for this process to send without claiming it —
    unless an older event of its (webhook, entity) is still leased (in flight, or waiting in
    some process): one at a time per pair, so it is left to a claim. Call after `supersede`,
    which locked the pair's pending event: no new lease on the pair can appear until commit.
    Returns the events inserted leased: public id → id."""
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(14)]
    leased = await conn.fetch(
        "WITH ins AS (INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, "
        "status, payload, payload_hash, changed_at, attempts, next_attempt_at, finished_at, leased_until) "
        "SELECT u.p, u.w, u.t, u.i, u.e, u.s, u.st, u.pl::json, u.h, u.c, u.a, coalesce(u.n, now()), "
        "CASE WHEN u.f THEN now() END, "
        "CASE WHEN u.l AND NOT EXISTS (SELECT 1 FROM webhook_events x WHERE x.webhook_id = u.w "
        "     AND x.entity_type = u.t AND x.entity_id = u.i AND x.leased_until > now()) "
        "     THEN now() + make_interval(secs => $15) END "
        "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], "
        "$6::bigint[], $7::text[], $8::text[], $9::bytea[], $10::timestamptz[], $11::int[], $12::timestamptz[], "
        "$13::bool[], $14::bool[]) u(p, w, t, i, e, s, st, pl, h, c, a, n, f, l) "
        "RETURNING id, public_id, webhook_id, entity_type, entity_id, status, leased_until), "
        "link AS (UPDATE webhook_events o SET superseded_by = n.id FROM ins n "
        "         WHERE o.id = ANY($16::bigint[]) AND n.status = 'pending' AND n.webhook_id = o.webhook_id "
        "         AND n.entity_type = o.entity_type AND n.entity_id = o.entity_id), "
        "h AS (INSERT INTO webhook_entity_state (webhook_id, entity_type, entity_id, last_payload_hash) "
        "      SELECT * FROM unnest($17::bigint[], $18::text[], $19::bigint[], $20::bytea[]) "
        "      ON CONFLICT (webhook_id, entity_type, entity_id) "
        "      DO UPDATE SET last_payload_hash = EXCLUDED.last_payload_hash), "
        "d AS (DELETE FROM pending_entities WHERE (entity_type, entity_id) IN "
        "      (SELECT * FROM unnest($21::text[], $22::bigint[]))), "
        # What is left of a moved entity is the changes after its claim: an update if its creation
        # was just enqueued, first changed after what was claimed, due by that (coalesce.due_at).
        "r AS (UPDATE pending_entities p SET claimed_until = NULL, "
        "      action = CASE WHEN p.action = 'created' THEN 'updated' ELSE p.action END, "
        "      first_change_at = m.f, due_at = m.d "
        "      FROM unnest($23::text[], $24::bigint[], $25::timestamptz[], $26::timestamptz[]) m(t, i, f, d) "
        "      WHERE p.entity_type = m.t AND p.entity_id = m.i), "
        "wake AS (SELECT pg_notify($27, '') FROM (SELECT 1 FROM ins WHERE status = 'pending' "
        "         AND leased_until IS NULL LIMIT 1) x) "
        "SELECT id, public_id FROM ins WHERE leased_until IS NOT NULL "
        "UNION ALL SELECT NULL, NULL FROM wake",
        *cols,
        lease_s,
        superseded,
        [h[0] for h in hashes],
        [h[1] for h in hashes],
        [h[2] for h in hashes],
        [h[3] for h in hashes],
        [k[0] for k in done],
        [k[1] for k in done],
        [k[0] for k in moved],
        [k[1] for k in moved],
        [k[2] for k in moved],
        [k[3] for k in moved],
        EVENTS_CHANNEL,
    )
    return {r["public_id"]: r["id"] for r in leased if r["id"] is not None}


@dataclass(frozen=True)
class FailedEvaluation:
    """An event whose evaluation breached a budget: recorded FAILED with its error, never sent.
    `payload` is the JSON text the event log shows; `reason` the metric label (time, size)."""

    public_id: str
    webhook_id: int
    entity_type: str
    entity_id: int
    event: str
    sequence: int
    payload: str
    payload_hash: bytes
    changed_at: datetime
    reason: str
    error: str


@dataclass(frozen=True)
class BudgetStreak:
    """A batch's effect on a webhook's consecutive budget breaches: `error` (the one to cite)
    when it breached, None when it only succeeded (the run of breaches ends)."""

    webhook_id: int
    error: str | None


RECORD_BUDGET_OUTCOMES_SQL = """
WITH failed AS (
    INSERT INTO webhook_events (public_id, webhook_id, entity_type, entity_id, event, sequence, status,
                                payload, payload_hash, changed_at, error, finished_at)
    SELECT u.p, u.w, u.t, u.i, u.e, u.s, 'failed', u.pl::json, u.h, u.c, u.err, now()
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],
                $8::bytea[], $9::timestamptz[], $10::text[]) u(p, w, t, i, e, s, pl, h, c, err)
), counted AS (
    -- /metrics: hookql_evaluation_budget_breaches_total{reason}, kept as the delivery counters
    -- are (migration 0007: rows per backend, summed at scrape time)
    INSERT INTO hookql_metric_counters AS c (metric, label, backend_pid, value)
    SELECT 'budget_breaches', r, pg_backend_pid(), count(*) FROM unnest($11::text[]) r GROUP BY r
    ON CONFLICT (metric, label, backend_pid) DO UPDATE SET value = c.value + EXCLUDED.value
), streak AS (
    SELECT w.id, u.err, w.enabled AND u.err IS NOT NULL AND w.budget_breaches + 1 >= $14 AS disable,
           w.budget_breaches + 1 AS breaches
    FROM unnest($12::bigint[], $13::text[]) u(id, err) JOIN webhooks w ON w.id = u.id
    WHERE u.err IS NOT NULL OR w.budget_breaches > 0
)
UPDATE webhooks w SET
    -- a disabled webhook starts a new count when it is enabled again
    budget_breaches = CASE WHEN s.err IS NULL OR s.disable THEN 0 ELSE s.breaches END,
    enabled = w.enabled AND NOT s.disable,
    disabled_reason = CASE WHEN s.disable
        THEN format('its query exceeded the evaluation budget %s times in a row (last: %s)', s.breaches, s.err)
        ELSE w.disabled_reason END
FROM streak s WHERE w.id = s.id
RETURNING w.id, s.disable, w.disabled_reason
"""


async def record_budget_outcomes(
    conn: asyncpg.Connection, failed: list[FailedEvaluation], streaks: list[BudgetStreak], breaches_to_disable: int
) -> list[tuple[int, str]]:
    """Record a batch's budget breaches (call inside the enqueue transaction, after
    `lock_webhooks`): the FAILED events, the breach counter, and each webhook's run of
    consecutive breaches — extended by a breach, ended by a success; a webhook whose run reaches
    `breaches_to_disable` is disabled with the reason, as a 410 disables one. Returns the
    webhooks disabled now: (id, reason)."""
    rows = await conn.fetch(
        RECORD_BUDGET_OUTCOMES_SQL,
        [f.public_id for f in failed],
        [f.webhook_id for f in failed],
        [f.entity_type for f in failed],
        [f.entity_id for f in failed],
        [f.event for f in failed],
        [f.sequence for f in failed],
        [f.payload for f in failed],
        [f.payload_hash for f in failed],
        [f.changed_at for f in failed],
        [f.error for f in failed],
        [f.reason for f in failed],
        [s.webhook_id for s in streaks],
        [s.error for s in streaks],
        breaches_to_disable,
    )
    return [(r["id"], r["disabled_reason"]) for r in rows if r["disable"]]


async def notify(conn: asyncpg.Connection, channel: str) -> None:
    await conn.execute("SELECT pg_notify($1, '')", channel)


# --- delivery ---------------------------------------------------------------------------------

CLAIM_EVENTS_SQL = """
WITH leased AS (
    -- attempts in flight; $4: this process's attempts that have finished but are not yet
    -- recorded, which no longer occupy a slot
    SELECT webhook_id, entity_type, entity_id FROM webhook_events
    WHERE leased_until IS NOT NULL AND leased_until > now() AND id <> ALL($4::bigint[])
), busy AS (
    SELECT webhook_id, count(*) AS n FROM leased GROUP BY webhook_id
), owner_busy AS (
    -- an owner is a seller, or the operator (seller_id NULL: owner 0, below every bigserial id)
    SELECT coalesce(w.seller_id, 0) AS owner, sum(b.n) AS n
    FROM busy b JOIN webhooks w ON w.id = b.webhook_id GROUP BY 1
), due AS (
    SELECT e.id, e.webhook_id, e.next_attempt_at FROM webhook_events e
    WHERE e.status = 'pending' AND e.next_attempt_at <= now()
      AND (e.leased_until IS NULL OR e.leased_until <= now())
      -- one in flight per (webhook, entity); a ping has no entity. NOT IN runs as a hashed
      -- subplan whatever the row estimates (a lease's `> now()` is always misestimated, and a
      -- nested-loop anti-join costs scanned × leased comparisons: seconds under a backlog).
      AND (e.entity_type IS NULL OR e.entity_id IS NULL OR (e.webhook_id, e.entity_type, e.entity_id) NOT IN (
          SELECT webhook_id, entity_type, entity_id FROM leased
          WHERE entity_type IS NOT NULL AND entity_id IS NOT NULL))
    ORDER BY e.next_attempt_at, e.id
    LIMIT $3
), ranked AS (
    -- $5: lease ahead only for a healthy webhook; a failing one (a URL being fixed, a receiver
    -- down) gets one round at a time, so each retry sees the webhook's configuration afresh
    SELECT d.id, d.next_attempt_at, coalesce(w.seller_id, 0) AS owner, coalesce(b.n, 0) AS busy,
           w.live_concurrency * CASE WHEN w.failing_since IS NULL THEN $5 ELSE 1 END
           - coalesce(b.n, 0) AS free,
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS rn
    FROM due d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
    LEFT JOIN busy b ON b.webhook_id = d.webhook_id
), shared AS (
    -- $6: events one owner may hold leased, over all its webhooks. They take turns, the one
    -- holding fewest first, so a webhook with little leased gets in ahead of a busy sibling.
    SELECT r.id, $6 - coalesce(o.n, 0) AS free,
           row_number() OVER (PARTITION BY r.owner ORDER BY r.busy + r.rn, r.next_attempt_at, r.id) AS rn
    FROM ranked r LEFT JOIN owner_busy o ON o.owner = r.owner
    WHERE r.rn <= r.free
), chosen AS (
    -- owners take turns for the room this process has ($1)
    SELECT id FROM shared WHERE rn <= free ORDER BY rn, id LIMIT $1
)
UPDATE webhook_events e
SET leased_until = now() + make_interval(secs => $2)
FROM webhooks w
-- looked up by primary key (an array, not a join the planner may turn into a scan of every
-- pending event). status is checked again on the row as it is when locked: an event superseded
-- by an enqueue that committed while this claim waited for the row must not be sent
WHERE e.id = ANY (ARRAY(SELECT id FROM chosen)) AND w.id = e.webhook_id AND e.status = 'pending'
RETURNING e.id, e.public_id, e.webhook_id, e.entity_type, e.entity_id, e.event, e.sequence, e.payload::text AS payload,
          e.changed_at, e.attempts, """ + _webhook_columns("w")


async def claim_events(
    conn: asyncpg.Connection,
    limit: int,
    lease_s: float,
    scan_limit: int,
    finished: list[int],
    ahead: int,
    owner_max_held: int,
) -> list[asyncpg.Record]:
    """Lease up to `limit` due events, at most `ahead` × live concurrency leased per webhook and
    `owner_max_held` per owner (a seller, or the operator), owners taking turns (app.policy.lanes). The
    lock is taken in its own statement first, so the claim runs on a snapshot that sees every
    lease committed before it (one statement would not)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK_KEY)
        return list(
            await conn.fetch(CLAIM_EVENTS_SQL, limit, lease_s, scan_limit, finished, ahead, owner_max_held)
        )


async def renew_leases(conn: asyncpg.Connection, event_ids: list[int], lease_s: float) -> list[int]:
    """Extend the leases of events this process holds; returns those that are no longer its to
    send (cancelled, delivered elsewhere after an expired lease, webhook disabled or deleted)."""
    rows = await conn.fetch(
        # Rows being recorded right now are skipped (their lease is about to go), not waited for.
        "WITH mine AS (SELECT id FROM webhook_events WHERE id = ANY($1::bigint[]) ORDER BY id "
        "              FOR NO KEY UPDATE SKIP LOCKED), "
        "renewed AS (UPDATE webhook_events e SET leased_until = now() + make_interval(secs => $2) "
        "            FROM mine, webhooks w WHERE e.id = mine.id AND w.id = e.webhook_id AND w.enabled "
        "            AND e.status = 'pending' AND e.leased_until > now() RETURNING e.id) "
        "SELECT mine.id FROM mine WHERE mine.id NOT IN (SELECT id FROM renewed) "
        "UNION ALL SELECT h.id FROM unnest($1::bigint[]) h(id) WHERE NOT EXISTS "
        "(SELECT 1 FROM webhook_events e WHERE e.id = h.id)",
        event_ids,
        lease_s,
    )
    return [r["id"] for r in rows]


async def next_event_due_in_s(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next unleased pending event of an enabled webhook is due, or None."""
    due = await conn.fetchval(
        "SELECT extract(epoch FROM min(e.next_attempt_at) - now()) FROM webhook_events e "
        "JOIN webhooks w ON w.id = e.webhook_id AND w.enabled "
        "WHERE e.status = 'pending' AND (e.leased_until IS NULL OR e.leased_until <= now())"
    )
    return None if due is None else float(due)


async def record_attempts(
    conn: asyncpg.Connection, attempts: list[tuple[Any, ...]], events: list[tuple[Any, ...]], webhook_ids: list[int]
) -> None:
    """One transaction's worth of attempt results (call inside a transaction).
    attempts: (event_id, webhook_id, attempted_at, duration_ms, status_code, headers, body, error)
    events:   (event_id, new_status, next_attempt_at)  — status applies only if still pending

    Webhook rows are only KEY SHARE locked here (a webhook delete waits; enqueueing, which locks
    them for update, does not), and event rows are locked in id order, as enqueueing's supersede
    does: recording and enqueueing for the same webhooks no longer wait for each other's whole
    transaction, and cannot deadlock."""
    if webhook_ids:
        await conn.execute(
            "SELECT 1 FROM webhooks WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE", sorted(webhook_ids))
    if attempts:
        cols = [list(c) for c in zip(*attempts, strict=True)]
        await conn.execute(
            "INSERT INTO webhook_attempts (event_id, webhook_id, attempted_at, duration_ms, status_code, "
            "response_headers, response_body, error) SELECT u.* FROM unnest($1::bigint[], $2::bigint[], "
            "$3::timestamptz[], $4::int[], $5::int[], $6::jsonb[], $7::text[], $8::text[]) "
            "u(event_id, webhook_id, attempted_at, duration_ms, status_code, response_headers, response_body, error) "
            # A webhook deleted while its attempt was in flight took its events along; the KEY SHARE
            # lock taken above keeps this consistent until commit.
            "WHERE EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = u.event_id)",
            *cols,
        )
    if events:
        cols = [list(c) for c in zip(*events, strict=True)]
        await conn.execute(
            "UPDATE webhook_events e SET attempts = e.attempts + 1, leased_until = NULL, "
            "status = CASE WHEN e.status = 'pending' THEN u.s ELSE e.status END, "
            "next_attempt_at = CASE WHEN e.status = 'pending' THEN u.n ELSE e.next_attempt_at END, "
            "finished_at = CASE WHEN e.status = 'pending' AND u.s <> 'pending' THEN now() ELSE e.finished_at END "
            "FROM (SELECT x.id, v.s, v.n FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) v(id, s, n) "
            "      JOIN webhook_events x ON x.id = v.id ORDER BY x.id FOR NO KEY UPDATE OF x) u "
            "WHERE e.id = u.id",
            *cols,
        )
    # Wake claimers only when these outcomes left events of these webhooks claimable: a newer
    # state that waited for the one in flight, or events held back by the concurrency the
    # released leases took. An outcome with nothing behind it wakes nobody.
    await conn.execute(
        "SELECT pg_notify($1, '') WHERE EXISTS (SELECT 1 FROM webhook_events e "
        "WHERE e.webhook_id = ANY($2::bigint[]) AND e.status = 'pending' AND e.next_attempt_at <= now() "
        "AND (e.leased_until IS NULL OR e.leased_until <= now()))",
        EVENTS_CHANNEL,
        webhook_ids,
    )


async def record_webhook_health(
    conn: asyncpg.Connection,
    webhooks: list[tuple[Any, ...]],
    failed_pairs: list[tuple[int, str, int]],
    disable_after_s: float,
) -> list[tuple[int, bool, int]]:
    """What a batch of outcomes does to its webhooks (call inside a transaction, after
    `record_attempts` committed). webhooks: (webhook_id, successes, rate_limited, failures, gone);
    a webhook whose attempts have only failed for `disable_after_s` is disabled. failed_pairs:
    (webhook, entity) whose state never reached the receiver: their skip hash is forgotten, under
    the webhook lock enqueueing reads it with. Returns (webhook_id, enabled, live_concurrency).

    `live_concurrency` follows app.policy.retry.next_concurrency, the rule's one statement, mirrored
    here in SQL; tests/integration/test_concurrency_rule.py pins the two together."""
    await lock_webhooks(conn, sorted({w[0] for w in webhooks}))
    states: list[tuple[int, bool, int]] = []
    if webhooks:
        cols = [list(c) for c in zip(*webhooks, strict=True)]
        rows = await conn.fetch(
            "UPDATE webhooks w SET "
            "live_concurrency = CASE WHEN u.limited > 0 THEN greatest(1, w.live_concurrency / 2) "
            "    ELSE least(w.concurrency, w.live_concurrency + u.ok) END, "
            "failing_since = CASE WHEN u.ok > 0 THEN NULL "
            "    WHEN u.failed > 0 THEN coalesce(w.failing_since, now()) ELSE w.failing_since END, "
            "enabled = w.enabled AND u.gone = 0 AND NOT (u.ok = 0 AND u.failed > 0 "
            "    AND coalesce(w.failing_since, now()) <= now() - make_interval(secs => $6)), "
            "disabled_reason = CASE WHEN u.gone > 0 THEN 'receiver answered 410 Gone' "
            "    WHEN u.ok = 0 AND u.failed > 0 "
            "         AND coalesce(w.failing_since, now()) <= now() - make_interval(secs => $6) "
            "    THEN 'every delivery failed for 5 days' ELSE w.disabled_reason END "
            "FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[], $5::int[]) u(id, ok, limited, failed, gone) "
            "WHERE w.id = u.id RETURNING w.id, w.enabled, w.live_concurrency",
            *cols,
            disable_after_s,
        )
        states = [(r["id"], r["enabled"], r["live_concurrency"]) for r in rows]
    if failed_pairs:
        cols = [list(c) for c in zip(*failed_pairs, strict=True)]
        # The receiver never got this state: forget it, so the next change is sent, not skipped.
        await conn.execute(
            "UPDATE webhook_entity_state s SET last_payload_hash = NULL "
            "FROM unnest($1::bigint[], $2::text[], $3::bigint[]) u(w, t, i) "
            "WHERE s.webhook_id = u.w AND s.entity_type = u.t AND s.entity_id = u.i",
            *cols,
        )
    return states


async def release_leases(conn: asyncpg.Connection, event_ids: list[int]) -> None:
    if event_ids:
        await conn.execute("UPDATE webhook_events SET leased_until = NULL WHERE id = ANY($1::bigint[])", event_ids)


async def prune(conn: asyncpg.Connection, retention_s: float, limit: int) -> int:
    """Delete finished events past retention: delivered, skipped and superseded ones. Failed and
    cancelled events stay for a person to look at."""
    result = await conn.execute(
        "DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events "
        "WHERE status IN ('delivered', 'skipped', 'superseded') AND finished_at < now() - make_interval(secs => $1) "
        "LIMIT $2)",
        retention_s,
        limit,
    )
    return int(result.rsplit(" ", 1)[-1])
