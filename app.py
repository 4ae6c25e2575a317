"""ShopStream: one Faust app whose agents are the shop's services.

Wiring only: settings -> app, discovery of the layers, services, web middleware.
Run it with ``faust -A app worker -l info``; every setting comes from ``SHOP_*`` variables
(see ``config/settings.py`` and docs/configuration.md).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, cast

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP, CollectionT, TransportT
from faust.types.web import ViewDecorator

from config import ConfigError, Settings
from config.checks import wait_for_kafka
from rabbit_bridge.central_logs import CentralLogs
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.log_shipping import LogShipping
from rabbit_bridge.mail import MailSender, PromotionMail
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.task_handlers import shop_task_workers
from scripts.seed import register_seed
from scripts.simulate import register_simulate

__all__ = ["ShopApp", "app", "central_logs", "log_shipping", "publisher", "rabbit", "settings",
           "task_workers"]

#: The layers whose modules declare agents, tables, views and services.
LAYERS = ["agents", "tables", "web", "rabbit_bridge"]

#: Loggers of ShopStream's own code, set to SHOP_LOG_LEVEL.
SHOP_LOGGERS = ["app", *LAYERS, "models", "config"]


#: The console log's format when it is not a terminal: mode's, without colors.
PLAIN_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"


def console_logging(is_terminal: bool) -> dict[str, Any] | None:
    """Return Faust's ``logging_config`` for the worker's console log: None on a terminal
    (mode's colored log), else mode's own set-up with a plain formatter for its console
    handler. mode's colored formatter cost 52-68 µs a record here (colorlog's escapes and
    mode's argument hooks), a plain one 9 µs, and a worker's output is mostly a file or a
    pipe. A log file (``--logfile``) keeps mode's own formatter either way."""
    if is_terminal:
        return None
    return {"merge": True, "formatters": {"colored": {"format": PLAIN_FORMAT}}}


def load_settings() -> Settings:
    """Read the settings, or stop with one line naming the variable to fix."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"shopstream: invalid setting {exc}") from None


class ShopApp(faust.App):
    """The Faust app, on the shop's transport (agents/transport.py: a producer flush that
    drains), with Tansu's corrections when ``SHOP_KAFKA_COMPAT=tansu``."""

    shop_settings: Settings

    def _new_transport(self) -> TransportT:
        from agents.transport import ShopTransport

        if self.shop_settings.is_tansu:
            from agents.tansu_compat import TansuTransport

            return TansuTransport(self.conf.broker_consumer, self)
        return ShopTransport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        from web.server import ShopWeb

        return ShopWeb(self)

    def table_route(self, table: CollectionT, shard_param: str | None = None, *,
                    query_param: str | None = None, match_info: str | None = None,
                    exact_key: str | None = None) -> ViewDecorator:
        """Faust's ``table_route`` (answer on the worker that owns the key), without raising
        an exception for every request answered here (tables/routing.py)."""
        from tables.routing import route_to_owner

        return cast(ViewDecorator, route_to_owner(
            self, table, query_param=query_param or shard_param, match_info=match_info,
            exact_key=exact_key))

    def worker_init(self) -> None:
        """Check Kafka answers and create this worker's data dir before the worker starts."""
        try:
            wait_for_kafka(self.shop_settings)
        except ConfigError as exc:
            raise SystemExit(f"shopstream: {exc}") from None
        self.shop_settings.datadir.mkdir(parents=True, exist_ok=True)
        super().worker_init()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """Wait for the streams before giving partitions up, but not for ever
        (agents/rebalance.py)."""
        from agents.rebalance import wait_for_streams, wait_limit

        if self.conf.stream_wait_empty:
            logger.info("Wait for streams...")
            await wait_for_streams(consumer, wait_limit(self.conf.broker_session_timeout))

    def _update_assignment(self, assigned: set[TP]) -> tuple[set[TP], set[TP]]:
        """Take the new assignment as Faust does, count it (agents/rebalance.py) and end
        the waits on partitions given up (tables/positions.py)."""
        from agents.rebalance import count_assignment
        from tables.positions import positions

        previous = self._assignment
        revoked, newly_assigned = super()._update_assignment(assigned)
        count_assignment(previous, assigned)
        positions.assigned((tp.topic, tp.partition) for tp in assigned)
        return revoked, newly_assigned

    def _on_autodiscovery_error(self, name: str) -> None:
        """Stop the worker: a layer module that fails to import is a bug, not a warning."""
        raise


def create_app(settings: Settings) -> ShopApp:
    """Build the Faust app from ``settings`` (the layers are discovered at worker start)."""
    from web.identity import rate_key
    from web.middleware import gateway, install_request_id_logging

    install_request_id_logging()

    shop = ShopApp(
        settings.app_id,
        broker=settings.kafka_url,
        store=settings.store,
        datadir=str(settings.datadir),
        autodiscover=LAYERS,
        origin="app",
        processing_guarantee="at_least_once",
        # Faust's opt-in Cython fast paths: a message is decoded once for all the agents of
        # its topic (+19% on three agents sharing a topic). The rebalance hang of
        # agents/rebalance.py happened with them on and off alike.
        cython_optimizations=True,
        logging_config=console_logging(sys.stdout.isatty()),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        producer_linger=settings.producer_linger,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url,
        Table="tables.base:ShopTable",
        GlobalTable="tables.base:ShopGlobalTable",
        Router="tables.routing:ShopRouter",
        Worker="agents.worker:ShopWorker",
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_application_options={"middlewares": [
            # served_by, request ids, CORS, rate limits and the error shape, in one
            gateway(settings.canonical_url, settings.cors_origins, settings.rate_limit,
                    settings.rate_burst, rate_key),
        ],
                                 "client_max_size": 1024 * 1024},
    )
    shop.shop_settings = settings
    return shop


def _lean_monitor(monitor: Any) -> Any:
    """Return Faust's Prometheus sensor as ShopMonitor: the same metrics, cheaper an event."""
    from web.monitor import ShopMonitor

    return ShopMonitor(metrics=monitor._metrics)


settings = load_settings()
for name in SHOP_LOGGERS:
    logging.getLogger(name).setLevel(settings.log_level)

app = create_app(settings)
setup_prometheus_sensors(app, name_prefix="shop")
app.monitor = _lean_monitor(app.monitor)
rabbit = RabbitConnection(settings.rabbit_url)
app.add_dependency(rabbit)
publisher = RabbitPublisher(rabbit, settings.datadir / "outbox.sqlite3")
app.add_dependency(publisher)
log_shipping = LogShipping(publisher, worker=settings.canonical_url, level=settings.log_level,
                           enabled=settings.log_shipping == "on")
app.add_dependency(log_shipping)
central_logs = CentralLogs(rabbit, settings.datadir / "logs")
app.add_dependency(central_logs)
register_seed(app)
register_simulate(app)
task_workers = shop_task_workers(settings, rabbit, publisher)
app.add_dependency(task_workers)
mail_sender = MailSender(rabbit, publisher, settings.smtp_url)
app.add_dependency(mail_sender)
promotion_mail = PromotionMail(rabbit)
app.add_dependency(promotion_mail)
