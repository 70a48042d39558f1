"""The per-webhook metric families of a hand-made snapshot: no database, no server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.policy import ids
from app.store.metrics import Snapshot, WebhookFigures
from app.web.metrics import families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(snap: Snapshot) -> Samples:
    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return families(snap)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def snapshot() -> Snapshot:
    return Snapshot(
        backlog=10,
        attempts_total={"2xx": 9.0, "5xx": 4.0},
        latency_buckets={"0.1": 5.0, "1": 4.0},
        latency_sum_s=3.5,
        webhooks=[
            WebhookFigures(7, backlog=6, attempts={"2xx": 5.0, "5xx": 4.0}, latency_buckets={"0.1": 5.0},
                           latency_sum_s=0.25),
            WebhookFigures(3, backlog=1, attempts={"2xx": 1.0}, latency_buckets={"1": 1.0}, latency_sum_s=0.75),
        ],
        webhooks_aggregated=4,
    )


def test_listed_webhooks_are_labelled_by_their_graphql_id_and_the_rest_is_other() -> None:
    samples = exposition(snapshot())
    seven, three = ids.encode("Webhook", 7), ids.encode("Webhook", 3)
    backlog = {dict(k[1])["webhook"]: v for k, v in samples.items() if k[0] == "hookql_webhook_backlog_events"}
    assert backlog == {seven: 6, three: 1, "other": 3}
    ok = {dict(k[1])["webhook"]: v for k, v in samples.items()
          if k[0] == "hookql_webhook_attempts_total" and ("status_class", "2xx") in k[1]}
    assert ok == {seven: 5, three: 1, "other": 3}
    assert samples[("hookql_webhook_attempts_total", frozenset({("webhook", "other"), ("status_class", "5xx")}))] == 0
    assert samples[("hookql_webhook_delivery_latency_seconds_count", frozenset({("webhook", "other")}))] == 3
    assert samples[("hookql_webhook_delivery_latency_seconds_bucket",
                    frozenset({("webhook", "other"), ("le", "0.1")}))] == 0
    assert samples[("hookql_webhook_delivery_latency_seconds_bucket",
                    frozenset({("webhook", "other"), ("le", "1.0")}))] == 3
    assert samples[("hookql_webhook_delivery_latency_seconds_sum", frozenset({("webhook", "other")}))] == 2.5
    assert samples[("hookql_webhooks_aggregated", frozenset())] == 4


def test_other_is_never_negative() -> None:
    # a webhook's figures read a hair above the total (float rounding of the latency sum)
    snap = Snapshot(latency_sum_s=0.3, webhooks=[WebhookFigures(1, latency_sum_s=0.1 + 0.2)])
    samples = exposition(snap)
    assert samples[("hookql_webhook_delivery_latency_seconds_sum", frozenset({("webhook", "other")}))] == 0


def test_without_webhooks_only_other_is_reported() -> None:
    samples = exposition(Snapshot(backlog=2, attempts_total={"4xx": 1.0}))
    labels = {dict(k[1]).get("webhook") for k in samples} - {None}
    assert labels == {"other"}
