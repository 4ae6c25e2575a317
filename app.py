"""ShopStream: one Faust app whose agents are the shop's services.

Wiring only: settings -> app, discovery of the layers, services, web middleware.
Run it with ``faust -A app worker -l info``; every setting comes from ``SHOP_*`` variables
(see ``config/settings.py`` and docs/configuration.md).
"""

from __future__ import annotations

import logging
import sys

from faust.sensors.prometheus import setup_prometheus_sensors

from config import ConfigError, Settings
from rabbit_bridge.central_logs import CentralLogs
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.log_shipping import LogShipping
from rabbit_bridge.mail import MailSender, PromotionMail
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.task_handlers import shop_task_workers
from runtime.app import ShopApp, console_logging, lean_monitor
from scripts.seed import register_seed
from scripts.simulate import register_simulate

__all__ = ["app", "central_logs", "log_shipping", "publisher", "rabbit", "settings",
           "task_workers"]

#: The layers whose modules declare agents, tables, views and services.
LAYERS = ["agents", "tables", "web", "rabbit_bridge"]

#: Loggers of ShopStream's own code, set to SHOP_LOG_LEVEL.
SHOP_LOGGERS = ["app", *LAYERS, "models", "config", "runtime"]


def load_settings() -> Settings:
    """Read the settings, or stop with one line naming the variable to fix."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"shopstream: invalid setting {exc}") from None


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
        # runtime/rebalance.py happened with them on and off alike.
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
        Table="runtime.tables:ShopTable",
        GlobalTable="runtime.tables:ShopGlobalTable",
        Router="runtime.routing:ShopRouter",
        Worker="runtime.worker:ShopWorker",
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
    shop.settings = settings
    return shop


settings = load_settings()
for name in SHOP_LOGGERS:
    logging.getLogger(name).setLevel(settings.log_level)

app = create_app(settings)
setup_prometheus_sensors(app, name_prefix="shop")
app.monitor = lean_monitor(app.monitor)
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
