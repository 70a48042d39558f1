"""Settings, from `HOOKQL_*` environment variables, overridable by CLI flags. A leaf module."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path


class SettingsError(ValueError):
    """A setting has a value hookql cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: the embedded PostgreSQL under data_dir
    data_dir: Path = Path(".hookql")
    host: str = "127.0.0.1"
    port: int = 8000
    debounce_ms: int = 500
    max_delay_ms: int = 5000
    retry_base_ms: int = 30_000
    retry_max_ms: int = 4 * 24 * 3600 * 1000
    allow_private_targets: bool = False
    delivery_retention_s: int = 3 * 24 * 3600
    log_level: str = "warning"
    # -- tenant isolation: every limit, budget and quota (README "Settings") ------------------------
    # Static cost of a GraphQL document, checked before it runs (app/evaluation/cost.py): API requests and
    # webhook queries alike. A seller key's limits are lower than an operator key's.
    seller_max_depth: int = 8  # levels of nested fields
    operator_max_depth: int = 12
    seller_max_aliases: int = 30  # aliased fields in one document
    operator_max_aliases: int = 100
    seller_max_cost: int = 5_000  # estimated objects and values returned (list fan-out included)
    operator_max_cost: int = 50_000
    # Runtime budgets.
    request_timeout_ms: int = 10_000  # one GraphQL request (HTTP or one subscription's set-up)
    max_response_bytes: int = 5 * 1024 * 1024  # one GraphQL response over HTTP
    # One owner's webhook queries evaluating a run of up to 100 entities (app/evaluation/execute.py). 500 ms:
    # a breaching run stops 0.1-0.3 s after its budget (measured), so another owner waits < 1 s.
    evaluation_timeout_ms: int = 500
    # One webhook payload (the query's result as JSON). Marketplacer caps payloads too. 256 KiB is
    # ~100x a fully selected invoice of the sample data (2.4 KB with 4 line items), yet keeps each
    # event's storage, signing and every retry's send cheap, and stays under the 1 MB request body
    # that receivers behind a default nginx accept.
    max_payload_bytes: int = 256 * 1024
    # Webhook queries compiled to one SQL statement per group and batch (app/evaluation/sql.py);
    # off: every query runs through graphql-core. Payloads are byte-identical either way.
    compiled_queries: bool = True
    budget_breaches_to_disable: int = 3  # consecutive breaches that disable a webhook
    # Delivery fairness: of the process's send slots, at most this many per owner (a seller, or
    # the operator) at once.
    owner_max_sending: int = 64
    # Quotas.
    seller_max_webhooks: int = 25
    key_requests_per_s: int = 10  # per API key and serve process; bursts up to twice this
    key_max_concurrent_requests: int = 4  # GraphQL requests of one key running at once
    # Each key's budget of query-cost points (app/policy/quotas.py): a document's estimated cost is taken
    # before it runs and what it did not return is given back. A point is one object or value
    # returned, ~15-30 µs of the API's event loop, so 1,000 points a second hold a seller's key to
    # a few percent of it however many clients share the key. The bucket holds at least the cost
    # limit (checked), so any document within the limit can run: 10,000 is two at the limit.
    seller_cost_bucket: int = 10_000  # points
    seller_cost_restore_per_s: int = 1_000  # points a second
    operator_cost_bucket: int = 100_000
    operator_cost_restore_per_s: int = 10_000
    key_max_subscriptions: int = 5  # open subscriptions (websocket operations) per key
    ws_auth_timeout_s: int = 10  # a websocket that has not authenticated by then is closed
    shutdown_timeout_s: int = 10  # SIGTERM/SIGINT: attempts in flight get this long to finish
    # /metrics: webhooks with series of their own (the largest backlogs); the rest are summed under
    # webhook="other". Each listed webhook costs 23 series (backlog, 5 attempt classes, 17 of the
    # latency histogram), so 50 keeps a scrape under 1,200 per-webhook series.
    metrics_max_webhooks: int = 50
    # `hookql listen`: how long a listener's hold on a webhook lasts past its last renewal (the CLI
    # renews every third of it). A temporary webhook whose listener died is deleted, and an attached
    # one goes back to HTTP delivery, within this plus 1 s.
    listen_lease_s: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        url = env.get("HOOKQL_DATABASE_URL") or env.get("DATABASE_URL")
        if url:
            values["database_url"] = url
        for f in fields(cls):
            if f.name == "database_url":
                continue
            key = "HOOKQL_" + f.name.upper()
            if f.name == "delivery_retention_s":
                key = "HOOKQL_DELIVERY_RETENTION"
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            values[f.name] = parse_setting(f.name, raw)
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **overrides: object) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(self, **clean)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.database_url is not None:
            check_database_url(self.database_url)
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be 1-65535, got {self.port}")
        for name in ("debounce_ms", "max_delay_ms", "retry_base_ms", "retry_max_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        for name in POSITIVE_SETTINGS:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_delay_ms < self.debounce_ms:
            raise SettingsError("max_delay_ms must be at least debounce_ms")
        if self.retry_max_ms < self.retry_base_ms:
            raise SettingsError("retry_max_ms must be at least retry_base_ms")
        for kind in ("seller", "operator"):
            bucket, limit = getattr(self, f"{kind}_cost_bucket"), getattr(self, f"{kind}_max_cost")
            if bucket < limit:
                # a document within the limit but above the bucket could never run
                raise SettingsError(f"{kind}_cost_bucket ({bucket}) must be at least {kind}_max_cost ({limit})")


# Limits, budgets and quotas: zero would refuse everything, so each is at least 1.
POSITIVE_SETTINGS = (
    "seller_max_depth",
    "operator_max_depth",
    "seller_max_aliases",
    "operator_max_aliases",
    "seller_max_cost",
    "operator_max_cost",
    "request_timeout_ms",
    "max_response_bytes",
    "evaluation_timeout_ms",
    "max_payload_bytes",
    "budget_breaches_to_disable",
    "owner_max_sending",
    "seller_max_webhooks",
    "key_requests_per_s",
    "key_max_concurrent_requests",
    "seller_cost_bucket",
    "seller_cost_restore_per_s",
    "operator_cost_bucket",
    "operator_cost_restore_per_s",
    "key_max_subscriptions",
    "ws_auth_timeout_s",
    "shutdown_timeout_s",
    "metrics_max_webhooks",
    "listen_lease_s",
)

BOOLEAN_SETTINGS = ("allow_private_targets", "compiled_queries")

DATABASE_URL_SCHEMES = ("postgresql", "postgres")  # asyncpg's (and libpq's) spellings


def check_database_url(url: str) -> None:
    """Refuse, in one line, a database URL that is not a PostgreSQL URL: caught here, before any
    connection is tried, it is a settings mistake rather than an unreachable server."""
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() in DATABASE_URL_SCHEMES:
        return
    # Show what was given only when it cannot hold a password (no `user:password@` part).
    shown = f" {url!r}" if "@" not in url and len(url) <= 200 else ""
    raise SettingsError(
        f"the database URL{shown} is not a PostgreSQL URL: set HOOKQL_DATABASE_URL "
        "(or DATABASE_URL, or --database-url) to postgresql://user:password@host:5432/database, "
        "or unset it for the embedded PostgreSQL"
    )


_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(raw: str) -> int:
    """`3d`, `12h`, `90m`, `30s` or plain seconds → seconds."""
    text = raw.strip().lower()
    if text and text[-1] in _DURATION_UNITS_S:
        number, unit = text[:-1], _DURATION_UNITS_S[text[-1]]
    else:
        number, unit = text, 1
    try:
        value = int(number)
    except ValueError:
        raise SettingsError(f"not a duration: {raw!r} (use e.g. 30s, 90m, 12h, 3d)") from None
    if value < 0:
        raise SettingsError(f"duration must not be negative: {raw!r}")
    return value * unit


def parse_setting(name: str, raw: str) -> object:
    if name == "data_dir":
        return Path(raw)
    if name in ("host", "log_level"):
        return raw
    if name in BOOLEAN_SETTINGS:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"HOOKQL_{name.upper()} must be true or false, got {raw!r}")
    if name == "delivery_retention_s":
        return parse_duration_s(raw)
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"HOOKQL_{name.upper()} must be a whole number, got {raw!r}") from None
