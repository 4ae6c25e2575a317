"""ShopStream: one Faust app whose agents are the shop's services.

The app only: settings -> the Faust app. Run it with ``faust -A app worker -l info``; every
setting comes from ``SHOP_*`` variables (see ``config/settings.py`` and
docs/configuration.md). Every module of the layers imports ``app`` from here, and this module
imports none of them: Faust's autodiscovery loads them at worker start (and for every
``faust -A app`` command), ``wiring.py`` among them, which makes the services
(``app.services``) and registers the commands.
"""

from __future__ import annotations

import logging
import sys

from faust.sensors.prometheus import setup_prometheus_sensors

from config import ConfigError, Settings
from config.running_stack import use_running_stack_for_commands
from runtime.app import ShopApp, console_logging, lean_monitor

__all__ = ["LAYERS", "ShopApp", "app", "create_app", "load_settings"]

#: What Faust's autodiscovery loads at worker start and for every command: the layers whose
#: modules declare agents, tables and views, and the wiring of the services and commands.
LAYERS = ["agents", "tables", "web", "rabbit_bridge", "wiring"]

#: Loggers of ShopStream's own code, set to SHOP_LOG_LEVEL ("trace": the steps of a request).
SHOP_LOGGERS = ["app", *LAYERS, "models", "config", "runtime", "trace"]


def load_settings() -> Settings:
    """Read the settings, or stop with one line naming the variable to fix.

    A command run beside ``make run`` (seed, simulate, send) first learns where its broker
    listens (config/running_stack.py)."""
    use_running_stack_for_commands()
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"shopstream: invalid setting {exc}") from None


def create_app(settings: Settings) -> ShopApp:
    """Build the Faust app from ``settings`` (the layers are discovered at worker start;
    ``web/server.py`` adds the web middleware), with the shop's loggers at its log level."""
    for name in SHOP_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
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
        TableManager="runtime.tables:ShopTableManager",
        Router="runtime.routing:ShopRouter",
        Worker="runtime.worker:ShopWorker",
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_application_options={"client_max_size": 1024 * 1024},
    )
    shop.settings = settings
    setup_prometheus_sensors(shop, name_prefix="shop")
    shop.monitor = lean_monitor(shop.monitor)
    return shop


app = create_app(load_settings())
