"""ShopStream settings: one frozen object built from ``SHOP_*`` environment variables.

Every setting is typed, documented and bound to one variable (see ``SETTINGS`` below and the
settings table in docs/configuration.md). ``Settings.from_env()`` validates them all at start
and raises :class:`ConfigError` naming the first bad variable; tests build their own
``Settings(...)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from config.errors import ConfigError

__all__ = ["DEV_JWT_SECRET", "Settings"]

#: The secret used when SHOP_JWT_SECRET is unset. Fine on a laptop, refused in production.
DEV_JWT_SECRET = "shopstream-dev-secret-change-me-0123456789"

_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class Settings:
    """All of ShopStream's settings; the docstring of each field is in ``SETTINGS``."""

    app_id: str = "shopstream"
    kafka_url: str = "kafka://127.0.0.1:9092"
    kafka_compat: str = ""
    tansu_fetch_wait: float = 0.05
    rabbit_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    smtp_url: str = "smtp://127.0.0.1:25"
    store: str = "rocksdb://"
    datadir: Path = Path("var/data")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_canonical_url: str = ""
    topic_partitions: int = 8
    topic_replication_factor: int = 1
    standby_replicas: int = 1
    jwt_secret: str = DEV_JWT_SECRET
    log_level: str = "INFO"
    log_shipping: str = "on"
    log_commits: str = "off"
    session_timeout: float = 6.0
    heartbeat_interval: float = 1.5
    commit_interval: float = 1.0
    producer_linger: float = 0.0
    producer_request_timeout: float = 40.0
    rate_limit: float = 100.0
    rate_burst: float = 200.0
    write_wait_s: float = 5.0
    cors_origins: frozenset[str] = frozenset()
    environment: str = "development"
    order_ttl: float = 900.0
    payment_slow_seconds: float = 0.5
    payment_call_timeout: float = 10.0
    payment_tries: int = 5
    payment_backoff: float = 0.5
    support_first_response_target: float = 3600.0
    access_token_ttl: float = 900.0
    refresh_token_ttl: float = 14 * 24 * 3600.0
    password_hash_cost: str = "standard"
    admin_email: str = ""
    admin_password: str = ""
    task_expire_orders_every: float = 1.0
    task_promotion_windows_every: float = 5.0
    task_popularity_every: float = 300.0
    task_daily_report_cron: str = "5 0 * * *"
    analytics_grace: float = 300.0
    demo_catalog: str = "on"
    demo_shoppers: float = 20.0
    store_memory_mb: float = 32.0
    store_write_buffers_mb: float = 16.0
    store_write_buffer_mb: float = 1.0
    store_idle_release: float = 30.0

    @property
    def canonical_url(self) -> str:
        """Return the URL other workers use to reach this worker's web server."""
        host = f"[{self.web_host}]" if ":" in self.web_host else self.web_host  # IPv6
        return self.web_canonical_url or f"http://{host}:{self.web_port}"

    @property
    def is_tansu(self) -> bool:
        """Return True when the Tansu compatibility layer is switched on."""
        return self.kafka_compat == "tansu"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build and validate settings from ``SHOP_*`` variables (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = env.get(spec.variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[spec.field] = spec.parse(raw.strip())
            except ConfigError:
                raise
            except ValueError as exc:
                raise ConfigError(spec.variable, f"{exc} (got {raw!r})") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check rules that involve more than one setting; raise :class:`ConfigError`."""
        if self.environment == "production" and self.jwt_secret == DEV_JWT_SECRET:
            raise ConfigError(
                "SHOP_JWT_SECRET",
                "must be set to a secret of at least 32 characters when "
                "SHOP_ENVIRONMENT=production",
            )
        if self.environment == "production" and self.password_hash_cost != "standard":
            raise ConfigError(
                "SHOP_PASSWORD_HASH_COST",
                "must be 'standard' when SHOP_ENVIRONMENT=production ('light' is for tests)",
            )
        if bool(self.admin_email) != bool(self.admin_password):
            raise ConfigError(
                "SHOP_ADMIN_PASSWORD" if self.admin_email else "SHOP_ADMIN_EMAIL",
                "SHOP_ADMIN_EMAIL and SHOP_ADMIN_PASSWORD must be set together (or neither)",
            )
        if self.store_write_buffers_mb > self.store_memory_mb:
            raise ConfigError(
                "SHOP_STORE_WRITE_BUFFERS_MB",
                f"must be at most SHOP_STORE_MEMORY_MB ({self.store_memory_mb} MB): the "
                f"memtables are charged to that cache, got {self.store_write_buffers_mb} MB",
            )
        if self.store_write_buffer_mb > self.store_write_buffers_mb:
            raise ConfigError(
                "SHOP_STORE_WRITE_BUFFER_MB",
                f"must be at most SHOP_STORE_WRITE_BUFFERS_MB ({self.store_write_buffers_mb} "
                f"MB), got {self.store_write_buffer_mb} MB",
            )
        if self.heartbeat_interval * 3 > self.session_timeout + 1e-9:  # 1.1 * 3 > 3.3 in floats
            raise ConfigError(
                "SHOP_HEARTBEAT_INTERVAL",
                f"must be at most a third of SHOP_SESSION_TIMEOUT ({self.session_timeout} s), "
                f"got {self.heartbeat_interval} s",
            )


# -- Parsers: each raises ValueError with what is wrong; from_env adds the variable name. ----


def _text(raw: str) -> str:
    return raw


N = TypeVar("N", int, float)


def _between(kind: type[N], low: N, high: N, unit: str = "") -> Callable[[str], N]:
    what = "a whole number" if kind is int else f"a number of {unit or 'units'}"
    suffix = f" {unit}" if unit else ""

    def parse(raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"must be {what} from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}{suffix}")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    return _between(int, low, high)


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _between(float, low, high, "seconds")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(repr(c) for c in choices)}")
        return value

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        # Kafka URLs may list several brokers separated by ';' (Faust's own syntax); the parts
        # after the first may leave out the scheme: kafka://k1:9092;k2:9092.
        parts = [part.strip() for part in raw.split(";")]
        for index, part in enumerate(parts):
            if index and "://" not in part:
                part = f"{urlsplit(parts[0]).scheme}://{part}"
            parsed = urlsplit(part)
            if parsed.scheme not in schemes:
                raise ValueError(
                    f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
                )
            if parsed.scheme not in ("memory", "rocksdb") and not parsed.hostname:
                raise ValueError("must name a host, e.g. " + f"{schemes[0]}://127.0.0.1")
            try:
                port = parsed.port
            except ValueError:
                port = -1
            if port is not None and not 1 <= port <= 65535:
                raise ValueError(f"has a bad port in {part!r}: it must be from 1 to 65535")
        return raw

    return parse


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return value


def _app_id(raw: str) -> str:
    # The app id prefixes Kafka topic names, which allow only these characters.
    if not _APP_ID.fullmatch(raw):
        raise ValueError("may hold only ASCII letters, digits, '-', '_' and '.'")
    return raw


def _secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters long")
    return raw


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(raw: str) -> str:
    if len(raw) > 254 or not _EMAIL.fullmatch(raw):
        raise ValueError("must be an e-mail address such as admin@example.com")
    return raw.lower()


def _password(raw: str) -> str:
    if not 8 <= len(raw) <= 128:
        raise ValueError("must be 8 to 128 characters long")
    return raw


def _origins(raw: str) -> frozenset[str]:
    origins = frozenset(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins - {"*"}:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
            raise ValueError(f"must list origins like https://shop.example.com, not {origin!r}")
    return origins


def _cron(raw: str) -> str:
    # Imported when a crontab setting is read, not with the settings: croniter is slow to
    # import, and every process that reads the settings (the launcher, the tests) would pay.
    from croniter import croniter

    if not croniter.is_valid(raw):
        raise ValueError("must be a crontab line of five fields, e.g. '5 0 * * *'")
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its field, environment variable, parser and meaning."""

    field: str
    variable: str
    parse: Callable[[str], Any]
    doc: str


SETTINGS: tuple[Spec, ...] = (
    Spec("app_id", "SHOP_APP_ID", _app_id,
         "Faust application id: consumer group and prefix of table changelog topics."),
    Spec("kafka_url", "SHOP_KAFKA_URL", _url("kafka"),
         "Kafka bootstrap servers, e.g. kafka://k1:9092;k2:9092."),
    Spec("kafka_compat", "SHOP_KAFKA_COMPAT", _one_of("", "tansu"),
         "Broker quirks to work around: 'tansu' for the embedded dev broker, empty for Kafka."),
    Spec("tansu_fetch_wait", "SHOP_TANSU_FETCH_WAIT", _seconds(0.001, 1),
         "With SHOP_KAFKA_COMPAT=tansu: how long a fetch that finds nothing waits. Tansu "
         "answers it only then, even if data arrives meanwhile, so it delays each hop of a "
         "quiet shop; shorter costs idle CPU (Kafka answers as soon as data arrives)."),
    Spec("rabbit_url", "SHOP_RABBIT_URL", _url("amqp", "amqps"),
         "RabbitMQ URL for logs, promotions, tasks and mail notifications."),
    Spec("smtp_url", "SHOP_SMTP_URL", _url("smtp"),
         "SMTP server the mail sender delivers notification mail to, e.g. smtp://mail:25."),
    Spec("store", "SHOP_STORE", _url("rocksdb", "memory"),
         "Table storage: rocksdb:// (RocksDB via rocksdict) or memory:// (tests only)."),
    Spec("datadir", "SHOP_DATADIR", _path,
         "Directory for this worker's table data; one per worker."),
    Spec("web_host", "SHOP_WEB_HOST", _text, "Interface the web server binds to."),
    Spec("web_port", "SHOP_WEB_PORT", _int_between(1, 65535), "Port of the web server."),
    Spec("web_canonical_url", "SHOP_WEB_CANONICAL_URL", _url("http", "https"),
         "URL other workers use to reach this one (default http://WEB_HOST:WEB_PORT)."),
    Spec("topic_partitions", "SHOP_TOPIC_PARTITIONS", _int_between(1, 1024),
         "Partitions of every topic the app creates; the most workers that share work."),
    Spec("topic_replication_factor", "SHOP_TOPIC_REPLICATION_FACTOR", _int_between(1, 16),
         "Replication factor of the topics the app creates (3 on a production cluster)."),
    Spec("standby_replicas", "SHOP_STANDBY_REPLICAS", _int_between(0, 8),
         "Standby copies of each table partition kept by other workers (faster failover)."),
    Spec("jwt_secret", "SHOP_JWT_SECRET", _secret, "Secret that signs access tokens."),
    Spec("log_level", "SHOP_LOG_LEVEL", _log_level, "Logging level of every service."),
    Spec("log_shipping", "SHOP_LOG_SHIPPING", _one_of("on", "off"),
         "'on' ships every log record to RabbitMQ (shop.logs) for GET /api/admin/logs."),
    Spec("log_commits", "SHOP_LOG_COMMITS", _one_of("on", "off"),
         "'on' logs every offset commit of the worker, per partition (to trace a lost or "
         "repeated event)."),
    Spec("session_timeout", "SHOP_SESSION_TIMEOUT", _seconds(3, 300),
         "Kafka consumer session timeout: how fast a dead worker is noticed."),
    Spec("heartbeat_interval", "SHOP_HEARTBEAT_INTERVAL", _seconds(0.5, 100),
         "Kafka consumer heartbeat interval (at most a third of the session timeout)."),
    Spec("commit_interval", "SHOP_COMMIT_INTERVAL", _seconds(0.1, 60),
         "How often processed offsets are committed; shorter means less replay after a crash."),
    Spec("producer_linger", "SHOP_PRODUCER_LINGER", _seconds(0, 1),
         "How long the producer holds a message for others to join its request. 0 sends at "
         "once; what arrives while a request is in flight goes together in the next one."),
    Spec("producer_request_timeout", "SHOP_PRODUCER_REQUEST_TIMEOUT", _seconds(5, 1200),
         "How long a produce request may go unanswered before the producer sends it again on a "
         "new connection (a message itself may wait for Kafka up to Faust's 20 minutes)."),
    Spec("rate_limit", "SHOP_RATE_LIMIT", _between(float, 0.1, 1_000_000.0, "requests a second"),
         "Requests a second each caller (user, or address when anonymous) may make to /api."),
    Spec("rate_burst", "SHOP_RATE_BURST", _between(float, 1.0, 1_000_000.0, "requests"),
         "How many requests a caller may make at once before the rate limit applies."),
    Spec("write_wait_s", "SHOP_WRITE_WAIT_S", _seconds(0, 60),
         "Seconds a write waits for its table to apply it before answering 202 with a "
         "Shop-Position token."),
    Spec("cors_origins", "SHOP_CORS_ORIGINS", _origins,
         "Comma-separated origins whose pages may call /api from a browser ('*': any)."),
    Spec("order_ttl", "SHOP_ORDER_TTL", _seconds(1, 7 * 24 * 3600),
         "Seconds an order may wait for stock and payment before it expires."),
    Spec("payment_slow_seconds", "SHOP_PAYMENT_SLOW_SECONDS", _seconds(0, 60),
         "How long the simulated provider takes to answer pm_card_slow and "
         "pm_card_declined_late."),
    Spec("payment_call_timeout", "SHOP_PAYMENT_CALL_TIMEOUT", _seconds(0.05, 300),
         "Seconds a charge or refund may wait for the provider before the try counts as "
         "failed (and is tried again)."),
    Spec("payment_tries", "SHOP_PAYMENT_TRIES", _int_between(1, 20),
         "Tries of a charge or refund the provider fails to answer before the payment is "
         "dead-lettered (a charge then fails as provider_unavailable)."),
    Spec("payment_backoff", "SHOP_PAYMENT_BACKOFF", _seconds(0.01, 60),
         "Seconds before the second try of a failed charge or refund; each next wait is "
         "twice the last."),
    Spec("support_first_response_target", "SHOP_SUPPORT_FIRST_RESPONSE_TARGET",
         _seconds(1, 30 * 24 * 3600),
         "Seconds a support ticket may wait for its first response before it is a breach."),
    Spec("access_token_ttl", "SHOP_ACCESS_TOKEN_TTL", _seconds(10, 24 * 3600),
         "Seconds an access token (JWT) is valid."),
    Spec("refresh_token_ttl", "SHOP_REFRESH_TOKEN_TTL", _seconds(60, 365 * 24 * 3600),
         "Seconds a refresh token is valid (each refresh replaces it with a new one)."),
    Spec("password_hash_cost", "SHOP_PASSWORD_HASH_COST", _one_of("standard", "light"),
         "Argon2 parameters: 'standard' (about 160 ms a hash), 'light' for tests only."),
    Spec("admin_email", "SHOP_ADMIN_EMAIL", _email,
         "E-mail of the first admin, registered at start if free (with SHOP_ADMIN_PASSWORD)."),
    Spec("admin_password", "SHOP_ADMIN_PASSWORD", _password,
         "Password of the first admin (8 to 128 characters)."),
    Spec("task_expire_orders_every", "SHOP_TASK_EXPIRE_ORDERS_EVERY", _seconds(0.1, 3600),
         "Seconds between each worker's looks for the orders it owns past SHOP_ORDER_TTL."),
    Spec("task_promotion_windows_every", "SHOP_TASK_PROMOTION_WINDOWS_EVERY",
         _seconds(0.1, 3600),
         "Seconds between runs of the promotion-windows task (activate, expire)."),
    Spec("task_popularity_every", "SHOP_TASK_POPULARITY_EVERY", _seconds(1, 7 * 24 * 3600),
         "Seconds between runs of the popularity task (popular products)."),
    Spec("task_daily_report_cron", "SHOP_TASK_DAILY_REPORT_CRON", _cron,
         "When the daily-report task runs (crontab, UTC), for the previous day."),
    Spec("analytics_grace", "SHOP_ANALYTICS_GRACE", _seconds(0, 24 * 3600),
         "Seconds a tracked event may reach the broker after it happened and still count in "
         "the windows of its time (later: counted as late only)."),
    Spec("demo_catalog", "SHOP_DEMO_CATALOG", _one_of("on", "off"),
         "'on': make run loads the demo catalog at start (idempotent); 'off': an empty shop."),
    Spec("demo_shoppers", "SHOP_DEMO_SHOPPERS", _seconds(0, 3600),
         "Seconds of simulated shoppers make run lets loose once the shop is ready (0: none)."),
    Spec("store_memory_mb", "SHOP_STORE_MEMORY_MB", _between(float, 8.0, 65536.0, "MB"),
         "MB of the one RocksDB block cache all table stores of a worker share; their "
         "memtables are charged to it too (docs/memory.md)."),
    Spec("store_write_buffers_mb", "SHOP_STORE_WRITE_BUFFERS_MB",
         _between(float, 1.0, 65536.0, "MB"),
         "MB all memtables of a worker's stores may hold before a written store is flushed "
         "(at most SHOP_STORE_MEMORY_MB)."),
    Spec("store_write_buffer_mb", "SHOP_STORE_WRITE_BUFFER_MB",
         _between(float, 0.0625, 1024.0, "MB"),
         "MB of one store's memtable (two at most per store; a worker holds ~120 stores)."),
    Spec("store_idle_release", "SHOP_STORE_IDLE_RELEASE", _seconds(0, 24 * 3600),
         "Seconds without a table write or a shop request after which a worker gives its "
         "stores' memory back: memtables flushed, block cache shrunk, freed heap returned to "
         "the system; the next write or request takes the cache back (0: never)."),
    Spec("environment", "SHOP_ENVIRONMENT", _one_of("development", "test", "production"),
         "Deployment kind; 'production' refuses development defaults such as the JWT secret."),
)

assert {s.field for s in SETTINGS} == {f.name for f in fields(Settings)}, "SETTINGS out of sync"
