"""The Faust app class of ShopStream: Faust's app on the shop's transport, web driver and
rebalance handling (each in its module of this package; see runtime/README.md).

``app.py`` creates the one app from the settings; nothing here reads them at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP, TransportT
from faust.types.web import ViewDecorator

from config import ConfigError, Settings
from config.checks import wait_for_kafka
from runtime.monitor import ShopMonitor
from runtime.positions import positions
from runtime.rebalance import count_assignment, wait_for_streams, wait_limit
from runtime.store_memory import limit_heap_arenas
from runtime.tansu_compat import TansuTransport
from runtime.transport import ShopTransport
from runtime.web import ShopWeb

if TYPE_CHECKING:  # the type only: the services are made above every layer (wiring.py)
    from rabbit_bridge.services import Services

__all__ = ["PLAIN_FORMAT", "ShopApp", "console_logging", "lean_monitor"]


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


class ShopApp(faust.App):
    """The Faust app, on the shop's transport (runtime/transport.py: a producer flush that
    drains), with Tansu's corrections when ``SHOP_KAFKA_COMPAT=tansu``."""

    #: The settings the app was made from (``SHOP_*``).
    settings: Settings
    #: The worker's services (RabbitMQ, publisher, logs, tasks, mail), made by ``wiring.py``.
    services: Services

    def _new_transport(self) -> TransportT:
        if self.settings.is_tansu:
            return TansuTransport(self.conf.broker_consumer, self)
        return ShopTransport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        return ShopWeb(self)

    def table_route(self, *args: Any, **kwargs: Any) -> ViewDecorator:
        """Not used here: a keyed view is decorated with ``web.routing.route_to_owner``, which
        forwards the body and the answer's headers (Faust's forwarding drops them)."""
        raise TypeError("use web.routing.route_to_owner to answer on the key's owner")

    def worker_init(self) -> None:
        """Cap the malloc arenas, check Kafka answers and create this worker's data dir before
        the worker starts.

        The cap is set before the worker makes its first thread (the Kafka consumer's, the
        executor's): glibc gives a thread an arena of its own as it first allocates, and a
        cap set later leaves the arenas made before it (five in a worker that set it when its
        first store opened, each keeping what its threads freed)."""
        limit_heap_arenas()
        try:
            wait_for_kafka(self.settings)
        except ConfigError as exc:
            raise SystemExit(f"shopstream: {exc}") from None
        self.settings.datadir.mkdir(parents=True, exist_ok=True)
        super().worker_init()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """Wait for the streams before giving partitions up, but not for ever
        (runtime/rebalance.py)."""
        if self.conf.stream_wait_empty:
            logger.info("Wait for streams...")
            await wait_for_streams(consumer, wait_limit(self.conf.broker_session_timeout))

    def _update_assignment(self, assigned: set[TP]) -> tuple[set[TP], set[TP]]:
        """Take the new assignment as Faust does, count it (runtime/rebalance.py) and end
        the waits on partitions given up (runtime/positions.py)."""
        previous = self._assignment
        revoked, newly_assigned = super()._update_assignment(assigned)
        count_assignment(previous, assigned)
        positions.assigned((tp.topic, tp.partition) for tp in assigned)
        return revoked, newly_assigned

    def _on_autodiscovery_error(self, name: str) -> None:
        """Stop the worker: a layer module that fails to import is a bug, not a warning."""
        raise


def lean_monitor(monitor: Any) -> Any:
    """Return Faust's Prometheus sensor as ShopMonitor: the same metrics, cheaper an event."""
    return ShopMonitor(metrics=monitor._metrics)


