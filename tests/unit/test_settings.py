"""config/settings.py: defaults, one clear ConfigError per bad SHOP_* variable, a frozen object."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from yarl import URL

from config import ConfigError, Settings
from config.settings import DEV_JWT_SECRET, SETTINGS

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "x" * 32

#: One or more invalid values per variable, with the variable the error must name.
BAD_SETTINGS: list[tuple[dict[str, str], str]] = [
    ({"SHOP_WEB_PORT": "0"}, "SHOP_WEB_PORT"),
    ({"SHOP_DEMO_CATALOG": "yes"}, "SHOP_DEMO_CATALOG"),
    ({"SHOP_DEMO_SHOPPERS": "-1"}, "SHOP_DEMO_SHOPPERS"),
    ({"SHOP_WEB_PORT": "abc"}, "SHOP_WEB_PORT"),
    ({"SHOP_WEB_PORT": "70000"}, "SHOP_WEB_PORT"),
    ({"SHOP_WEB_PORT": "80.5"}, "SHOP_WEB_PORT"),
    ({"SHOP_KAFKA_URL": "http://x"}, "SHOP_KAFKA_URL"),
    ({"SHOP_KAFKA_URL": "kafka://"}, "SHOP_KAFKA_URL"),
    ({"SHOP_STORE": "redis://"}, "SHOP_STORE"),
    ({"SHOP_TOPIC_PARTITIONS": "0"}, "SHOP_TOPIC_PARTITIONS"),
    ({"SHOP_TOPIC_PARTITIONS": "many"}, "SHOP_TOPIC_PARTITIONS"),
    ({"SHOP_TOPIC_REPLICATION_FACTOR": "17"}, "SHOP_TOPIC_REPLICATION_FACTOR"),
    ({"SHOP_STANDBY_REPLICAS": "-1"}, "SHOP_STANDBY_REPLICAS"),
    ({"SHOP_LOG_LEVEL": "LOUD"}, "SHOP_LOG_LEVEL"),
    ({"SHOP_LOG_SHIPPING": "maybe"}, "SHOP_LOG_SHIPPING"),
    ({"SHOP_LOG_COMMITS": "yes"}, "SHOP_LOG_COMMITS"),
    ({"SHOP_JWT_SECRET": "short"}, "SHOP_JWT_SECRET"),
    ({"SHOP_KAFKA_COMPAT": "redpanda"}, "SHOP_KAFKA_COMPAT"),
    ({"SHOP_TANSU_FETCH_WAIT": "0"}, "SHOP_TANSU_FETCH_WAIT"),
    ({"SHOP_TANSU_FETCH_WAIT": "2"}, "SHOP_TANSU_FETCH_WAIT"),
    ({"SHOP_SESSION_TIMEOUT": "x"}, "SHOP_SESSION_TIMEOUT"),
    ({"SHOP_SESSION_TIMEOUT": "1000"}, "SHOP_SESSION_TIMEOUT"),
    ({"SHOP_SESSION_TIMEOUT": "nan"}, "SHOP_SESSION_TIMEOUT"),
    ({"SHOP_ORDER_TTL": "0"}, "SHOP_ORDER_TTL"),
    ({"SHOP_PRODUCER_LINGER": "2"}, "SHOP_PRODUCER_LINGER"),
    ({"SHOP_PRODUCER_REQUEST_TIMEOUT": "1"}, "SHOP_PRODUCER_REQUEST_TIMEOUT"),
    ({"SHOP_RATE_LIMIT": "0"}, "SHOP_RATE_LIMIT"),
    ({"SHOP_RATE_BURST": "lots"}, "SHOP_RATE_BURST"),
    ({"SHOP_WRITE_WAIT_S": "61"}, "SHOP_WRITE_WAIT_S"),
    ({"SHOP_CORS_ORIGINS": "shop.example.com"}, "SHOP_CORS_ORIGINS"),
    ({"SHOP_ORDER_TTL": "soon"}, "SHOP_ORDER_TTL"),
    ({"SHOP_PAYMENT_SLOW_SECONDS": "-1"}, "SHOP_PAYMENT_SLOW_SECONDS"),
    ({"SHOP_PAYMENT_CALL_TIMEOUT": "0"}, "SHOP_PAYMENT_CALL_TIMEOUT"),
    ({"SHOP_PAYMENT_TRIES": "0"}, "SHOP_PAYMENT_TRIES"),
    ({"SHOP_PAYMENT_TRIES": "2.5"}, "SHOP_PAYMENT_TRIES"),
    ({"SHOP_PAYMENT_BACKOFF": "soon"}, "SHOP_PAYMENT_BACKOFF"),
    ({"SHOP_SUPPORT_FIRST_RESPONSE_TARGET": "0"}, "SHOP_SUPPORT_FIRST_RESPONSE_TARGET"),
    ({"SHOP_HEARTBEAT_INTERVAL": "0.1"}, "SHOP_HEARTBEAT_INTERVAL"),
    ({"SHOP_COMMIT_INTERVAL": "0"}, "SHOP_COMMIT_INTERVAL"),
    ({"SHOP_APP_ID": "shop stream"}, "SHOP_APP_ID"),
    ({"SHOP_RABBIT_URL": "http://rabbit"}, "SHOP_RABBIT_URL"),
    ({"SHOP_SMTP_URL": "mail.example.com:25"}, "SHOP_SMTP_URL"),
    ({"SHOP_WEB_CANONICAL_URL": "ftp://worker-1"}, "SHOP_WEB_CANONICAL_URL"),
    ({"SHOP_ENVIRONMENT": "staging"}, "SHOP_ENVIRONMENT"),
    ({"SHOP_ACCESS_TOKEN_TTL": "5"}, "SHOP_ACCESS_TOKEN_TTL"),
    ({"SHOP_REFRESH_TOKEN_TTL": "forever"}, "SHOP_REFRESH_TOKEN_TTL"),
    ({"SHOP_PASSWORD_HASH_COST": "cheap"}, "SHOP_PASSWORD_HASH_COST"),
    ({"SHOP_TASK_EXPIRE_ORDERS_EVERY": "0"}, "SHOP_TASK_EXPIRE_ORDERS_EVERY"),
    ({"SHOP_TASK_PROMOTION_WINDOWS_EVERY": "often"}, "SHOP_TASK_PROMOTION_WINDOWS_EVERY"),
    ({"SHOP_TASK_POPULARITY_EVERY": "0.5"}, "SHOP_TASK_POPULARITY_EVERY"),
    ({"SHOP_TASK_DAILY_REPORT_CRON": "daily"}, "SHOP_TASK_DAILY_REPORT_CRON"),
    ({"SHOP_ANALYTICS_GRACE": "-1"}, "SHOP_ANALYTICS_GRACE"),
    ({"SHOP_STORE_MEMORY_MB": "4"}, "SHOP_STORE_MEMORY_MB"),
    ({"SHOP_STORE_WRITE_BUFFERS_MB": "lots"}, "SHOP_STORE_WRITE_BUFFERS_MB"),
    ({"SHOP_STORE_WRITE_BUFFER_MB": "0"}, "SHOP_STORE_WRITE_BUFFER_MB"),
    ({"SHOP_STORE_IDLE_RELEASE": "-1"}, "SHOP_STORE_IDLE_RELEASE"),
    ({"SHOP_ADMIN_EMAIL": "not-an-email", "SHOP_ADMIN_PASSWORD": "long enough"},
     "SHOP_ADMIN_EMAIL"),
    ({"SHOP_ADMIN_EMAIL": "a@example.com", "SHOP_ADMIN_PASSWORD": "short"},
     "SHOP_ADMIN_PASSWORD"),
    # Rules across settings.
    ({"SHOP_ADMIN_EMAIL": "a@example.com"}, "SHOP_ADMIN_PASSWORD"),
    ({"SHOP_ADMIN_PASSWORD": "long enough"}, "SHOP_ADMIN_EMAIL"),
    ({"SHOP_ENVIRONMENT": "production", "SHOP_JWT_SECRET": "x" * 32,
      "SHOP_PASSWORD_HASH_COST": "light"}, "SHOP_PASSWORD_HASH_COST"),
    ({"SHOP_SESSION_TIMEOUT": "6", "SHOP_HEARTBEAT_INTERVAL": "2.5"}, "SHOP_HEARTBEAT_INTERVAL"),
    ({"SHOP_ENVIRONMENT": "production"}, "SHOP_JWT_SECRET"),
    ({"SHOP_STORE_MEMORY_MB": "16", "SHOP_STORE_WRITE_BUFFERS_MB": "32"},
     "SHOP_STORE_WRITE_BUFFERS_MB"),
    ({"SHOP_STORE_WRITE_BUFFERS_MB": "4", "SHOP_STORE_WRITE_BUFFER_MB": "8"},
     "SHOP_STORE_WRITE_BUFFER_MB"),
    ({"SHOP_ENVIRONMENT": "production", "SHOP_JWT_SECRET": DEV_JWT_SECRET}, "SHOP_JWT_SECRET"),
]

#: Variables whose parser takes any text, so no value of theirs is invalid on its own.
FREE_TEXT = {"SHOP_WEB_HOST", "SHOP_DATADIR"}


def test_defaults() -> None:
    settings = Settings()
    assert settings.app_id == "shopstream"
    assert settings.kafka_url == "kafka://127.0.0.1:9092"
    assert settings.kafka_compat == ""
    assert not settings.is_tansu
    assert settings.store == "rocksdb://"
    assert settings.datadir == Path("var/data")
    assert settings.web_port == 6066
    assert settings.topic_partitions == 8
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.log_level == "INFO"
    assert (settings.session_timeout, settings.heartbeat_interval) == (6.0, 1.5)
    assert settings.environment == "development"


def test_the_payment_retry_defaults_and_values() -> None:
    settings = Settings()
    assert (settings.payment_call_timeout, settings.payment_tries, settings.payment_backoff) == (
        10.0, 5, 0.5)
    custom = Settings.from_env({"SHOP_PAYMENT_CALL_TIMEOUT": "0.5", "SHOP_PAYMENT_TRIES": "3",
                                "SHOP_PAYMENT_BACKOFF": "0.1"})
    assert (custom.payment_call_timeout, custom.payment_tries, custom.payment_backoff) == (
        0.5, 3, 0.1)


def test_the_store_memory_defaults_and_values() -> None:
    settings = Settings()
    assert (settings.store_memory_mb, settings.store_write_buffers_mb,
            settings.store_write_buffer_mb) == (32.0, 16.0, 1.0)
    custom = Settings.from_env({"SHOP_STORE_MEMORY_MB": "128", "SHOP_STORE_WRITE_BUFFERS_MB":
                                "128", "SHOP_STORE_WRITE_BUFFER_MB": "0.5"})
    assert (custom.store_memory_mb, custom.store_write_buffers_mb,
            custom.store_write_buffer_mb) == (128.0, 128.0, 0.5)


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_blank_values_count_as_unset() -> None:
    assert Settings.from_env({"SHOP_WEB_PORT": "  ", "SHOP_STORE": ""}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"WEB_PORT": "0", "SHOP_UNKNOWN": "x"}) == Settings()


def test_valid_values_are_parsed_and_normalised() -> None:
    settings = Settings.from_env({
        "SHOP_APP_ID": "shop-2.test_a",
        "SHOP_KAFKA_URL": "kafka://k1:9092",
        "SHOP_KAFKA_COMPAT": "TANSU",
        "SHOP_STORE": "memory://",
        "SHOP_DATADIR": "/tmp/shop-data",
        "SHOP_WEB_PORT": " 7001 ",
        "SHOP_TOPIC_PARTITIONS": "4",
        "SHOP_LOG_LEVEL": "debug",
        "SHOP_SESSION_TIMEOUT": "9",
        "SHOP_HEARTBEAT_INTERVAL": "3",
        "SHOP_ENVIRONMENT": "Production",
        "SHOP_JWT_SECRET": GOOD_SECRET,
    })
    assert settings.app_id == "shop-2.test_a"
    assert settings.is_tansu
    assert settings.store == "memory://"
    assert settings.datadir == Path("/tmp/shop-data")
    assert settings.web_port == 7001
    assert settings.topic_partitions == 4
    assert settings.log_level == "DEBUG"
    assert settings.session_timeout == 9.0
    assert settings.heartbeat_interval == 3.0
    assert settings.environment == "production"
    assert settings.jwt_secret == GOOD_SECRET


@pytest.mark.parametrize(("environ", "variable"), BAD_SETTINGS,
                         ids=[";".join(f"{k}={v}" for k, v in e.items()) for e, _ in BAD_SETTINGS])
def test_a_bad_variable_is_named_first_in_the_error(environ: dict[str, str],
                                                    variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    assert str(caught.value).startswith(f"{variable}: ")
    assert caught.value.variable == variable
    assert caught.value.problem, "the error must say what is wrong"


@pytest.mark.parametrize(("variable", "value"), [
    ("SHOP_WEB_PORT", "70000"),
    ("SHOP_LOG_LEVEL", "LOUD"),
    ("SHOP_SESSION_TIMEOUT", "x"),
])
def test_the_error_repeats_the_bad_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"got '{value}'"):
        Settings.from_env({variable: value})


def test_every_setting_with_a_parser_that_can_refuse_has_a_bad_value_above() -> None:
    covered = {variable for environ, _ in BAD_SETTINGS for variable in environ}
    assert {spec.variable for spec in SETTINGS} - FREE_TEXT - covered == set()


def test_every_setting_is_a_documented_shop_variable() -> None:
    for spec in SETTINGS:
        assert spec.variable == "SHOP_" + spec.field.upper()
        assert spec.doc.strip()


def test_production_accepts_a_real_secret() -> None:
    settings = Settings.from_env({"SHOP_ENVIRONMENT": "production", "SHOP_JWT_SECRET": GOOD_SECRET})
    assert settings.environment == "production"


def test_heartbeat_of_exactly_a_third_of_the_session_timeout_is_accepted() -> None:
    settings = Settings.from_env({"SHOP_SESSION_TIMEOUT": "6", "SHOP_HEARTBEAT_INTERVAL": "2"})
    assert settings.heartbeat_interval == 2.0


def test_validate_checks_settings_built_in_code() -> None:
    with pytest.raises(ConfigError, match=r"^SHOP_HEARTBEAT_INTERVAL: "):
        Settings(session_timeout=3.0, heartbeat_interval=2.0).validate()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.web_port = 1  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        settings.surprise = 1  # type: ignore[attr-defined]


def test_canonical_url_defaults_to_host_and_port() -> None:
    assert Settings().canonical_url == "http://127.0.0.1:6066"
    assert Settings(web_host="10.0.0.7", web_port=7001).canonical_url == "http://10.0.0.7:7001"


def test_an_explicit_canonical_url_wins() -> None:
    settings = Settings.from_env({"SHOP_WEB_CANONICAL_URL": "http://worker-1.internal:6066",
                                  "SHOP_WEB_PORT": "7001"})
    assert settings.canonical_url == "http://worker-1.internal:6066"


def test_the_documented_multi_broker_url_is_accepted() -> None:
    settings = Settings.from_env({"SHOP_KAFKA_URL": "kafka://k1:9092;k2:9092"})
    assert settings.kafka_url == "kafka://k1:9092;k2:9092"


def test_a_multi_broker_url_with_a_scheme_on_each_part_is_accepted() -> None:
    settings = Settings.from_env({"SHOP_KAFKA_URL": "kafka://k1:9092;kafka://k2:9092"})
    assert settings.kafka_url == "kafka://k1:9092;kafka://k2:9092"


@pytest.mark.parametrize("url", ["kafka://k1:abc", "kafka://k1:99999"])
def test_a_kafka_url_with_a_bad_port_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^SHOP_KAFKA_URL: "):
        Settings.from_env({"SHOP_KAFKA_URL": url})


@pytest.mark.parametrize("app_id", ["shöp", "shop²"])
def test_an_app_id_that_is_not_a_valid_topic_prefix_is_refused(app_id: str) -> None:
    with pytest.raises(ConfigError, match=r"^SHOP_APP_ID: "):
        Settings.from_env({"SHOP_APP_ID": app_id})


def test_a_heartbeat_of_exactly_a_third_is_accepted_for_decimal_values() -> None:
    settings = Settings.from_env({"SHOP_SESSION_TIMEOUT": "3.3", "SHOP_HEARTBEAT_INTERVAL": "1.1"})
    assert settings.heartbeat_interval == 1.1


def test_the_default_canonical_url_of_an_ipv6_host_is_a_valid_url() -> None:
    url = URL(Settings.from_env({"SHOP_WEB_HOST": "::1"}).canonical_url)
    assert (url.host, url.port) == ("::1", 6066)


def test_importing_the_app_with_a_bad_setting_prints_one_line_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env["SHOP_WEB_PORT"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "SHOP_WEB_PORT" in lines[0]
    assert "Traceback" not in result.stderr


def test_the_configuration_page_lists_every_setting_and_no_other() -> None:
    import re

    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(SHOP_[A-Z_]+)` \|", page, re.MULTILINE))
    assert documented == {spec.variable for spec in SETTINGS}
