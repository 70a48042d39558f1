"""Settings come from HOOKQL_* variables and flags; bad values are refused with a clear message."""

from pathlib import Path

import pytest

from app.config import Settings, SettingsError, parse_duration_s


def test_defaults_match_the_spec() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert (s.debounce_ms, s.max_delay_ms) == (500, 5000)
    assert (s.retry_base_ms, s.retry_max_ms) == (30_000, 4 * 86400 * 1000)
    assert s.allow_private_targets is False
    assert s.delivery_retention_s == 3 * 86400
    assert s.database_url is None and s.data_dir == Path(".hookql")


def test_environment_overrides_every_setting() -> None:
    s = Settings.from_env(
        {
            "HOOKQL_DATABASE_URL": "postgresql://x/y",
            "HOOKQL_DATA_DIR": "/tmp/d",
            "HOOKQL_HOST": "0.0.0.0",
            "HOOKQL_PORT": "9000",
            "HOOKQL_DEBOUNCE_MS": "10",
            "HOOKQL_MAX_DELAY_MS": "20",
            "HOOKQL_RETRY_BASE_MS": "5",
            "HOOKQL_RETRY_MAX_MS": "50",
            "HOOKQL_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKQL_DELIVERY_RETENTION": "12h",
        }
    )
    assert s.database_url == "postgresql://x/y" and s.data_dir == Path("/tmp/d") and s.host == "0.0.0.0"
    assert (s.port, s.debounce_ms, s.max_delay_ms, s.retry_base_ms, s.retry_max_ms) == (9000, 10, 20, 5, 50)
    assert s.allow_private_targets is True and s.delivery_retention_s == 12 * 3600


def test_database_url_falls_back_to_plain_database_url() -> None:
    assert Settings.from_env({"DATABASE_URL": "postgresql://a/b"}).database_url == "postgresql://a/b"
    both = {"DATABASE_URL": "postgresql://a/b", "HOOKQL_DATABASE_URL": "postgresql://c/d"}
    assert Settings.from_env(both).database_url == "postgresql://c/d"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOOKQL_PORT": "eighty"}, "HOOKQL_PORT must be a whole number"),
        ({"HOOKQL_ALLOW_PRIVATE_TARGETS": "maybe"}, "must be true or false"),
        ({"HOOKQL_DELIVERY_RETENTION": "3 weeks"}, "not a duration"),
    ],
)
def test_bad_environment_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_inconsistent_overrides_are_refused() -> None:
    with pytest.raises(SettingsError, match="max_delay_ms must be at least debounce_ms"):
        Settings().with_overrides(debounce_ms=1000, max_delay_ms=10)
    with pytest.raises(SettingsError, match="port"):
        Settings().with_overrides(port=70000)
    # a cost bucket below the cost limit could never pay for a document the limit lets through
    with pytest.raises(SettingsError, match=r"seller_cost_bucket \(4000\) must be at least seller_max_cost \(5000\)"):
        Settings().with_overrides(seller_cost_bucket=4000)
    with pytest.raises(SettingsError, match="operator_cost_bucket"):
        Settings().with_overrides(operator_max_cost=200_000)
    assert Settings().with_overrides(seller_max_cost=20_000, seller_cost_bucket=20_000).seller_cost_bucket == 20_000


def test_durations() -> None:
    assert [parse_duration_s(x) for x in ("30", "30s", "90m", "12h", "3d")] == [30, 30, 5400, 43200, 259200]


@pytest.mark.parametrize("url", ["not-a-url", "mysql://u@h/d", "localhost:5432", "http://db.example/x", ""])
def test_a_database_url_that_is_not_postgresql_is_refused_before_connecting(url: str) -> None:
    with pytest.raises(SettingsError, match="is not a PostgreSQL URL"):
        Settings().with_overrides(database_url=url) if url else Settings(database_url=url).check()


def test_a_refused_database_url_never_shows_a_password() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings().with_overrides(database_url="mysql://admin:hunter2@db/x")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("url", ["postgresql://u@h/d", "postgres://u:p@h:5432/d", "POSTGRESQL://h/d"])
def test_postgresql_urls_pass(url: str) -> None:
    assert Settings().with_overrides(database_url=url).database_url == url


def test_the_metrics_cap_is_a_setting_of_at_least_one() -> None:
    assert Settings.from_env({}).metrics_max_webhooks == 50
    assert Settings.from_env({"HOOKQL_METRICS_MAX_WEBHOOKS": "3"}).metrics_max_webhooks == 3
    with pytest.raises(SettingsError, match="metrics_max_webhooks must be at least 1"):
        Settings().with_overrides(metrics_max_webhooks=0)


def test_compiled_queries_has_a_flag_each_way(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import build_parser, settings_from

    monkeypatch.delenv("HOOKQL_COMPILED_QUERIES", raising=False)
    # given no flag, the default (on) holds; each flag sets it
    assert settings_from(build_parser().parse_args(["worker"])).compiled_queries is True
    assert settings_from(build_parser().parse_args(["worker", "--no-compiled-queries"])).compiled_queries is False
    monkeypatch.setenv("HOOKQL_COMPILED_QUERIES", "false")
    assert settings_from(build_parser().parse_args(["worker", "--compiled-queries"])).compiled_queries is True
