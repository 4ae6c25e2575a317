"""The worker process: Faust's worker, whose start-up spinner costs nothing once it has started.

At Faust's default log level (``faust -A app worker`` is ``-l warn``) the worker shows a
spinner while it starts, turned by a handler on the root logger that counts every record. To
get every record, Faust sets the root logger to DEBUG, and leaves it there. From then on every
``log.debug`` in aiokafka, Faust and mode builds a ``LogRecord`` and hands it to the root's
handlers, only for them to drop it: aiokafka logs each message it sends and each request it
reads: a bare agent's event and the saga's order cost measurably more CPU at ``-l warn``
than at ``-l info`` (docs/benchmarks.md).

:class:`ShopWorker` keeps the spinner for the start-up and, once the worker has started, takes
its handler off the root logger and gives the root logger the level the worker was started
with. (At ``-l info`` or below Faust shows no spinner and leaves the root logger alone.)

The console says what a person watching it needs: one line per state change of the worker
(starting, rebalancing, ready, stopping, stopped) and every warning and error.
:class:`StartupDetails` keeps the rest of the INFO records of Faust, mode and aiokafka (their
partition tables, every service's start and stop, every topic created, every RocksDB partition
opened: some 800 lines at each start) and the shop's own start-up chatter off the console
unless the worker runs at ``-l debug``. The shop's other INFO records stay (e.g. the consumer's
diagnostics, ``SHOP_LOG_COMMITS``), and what is shipped to RabbitMQ is not filtered here.

Once every service has stopped and every task has ended or been cancelled, mode runs one more
task on the event loop before it closes it, a sleep of a second. :class:`ShopWorker` sleeps
:data:`LAST_PASS_S` instead, enough for the callbacks of what was just closed to run: a
stopped worker exits a second sooner (each restart, each rolling deploy, each test).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, cast

import faust
from faust.utils.terminal.spinners import SpinnerHandler

__all__ = ["ShopWorker", "StartupDetails", "settle_root_logger"]

log = logging.getLogger(__name__)

#: Seconds the event loop runs on after the worker has stopped, before it is closed (mode: 1).
LAST_PASS_S = 0.05

#: Loggers of the shop's own code: their INFO records are the shop's to keep or not.
SHOP_LOGGERS = ("app", "agents", "tables", "web", "rabbit_bridge", "models", "config", "runtime",
                "scripts")

#: Where the libraries' own records come from, whichever logger they use (a store subclassed
#: in tables/ logs Faust's "opening partition ..." through the shop's logger).
LIBRARY_PATHS = tuple(f"{os.sep}{name}{os.sep}" for name in ("faust", "mode", "aiokafka"))

#: Start-up and routine messages of the shop's own code, details like Faust's.
SHOP_DETAILS = ("consuming RabbitMQ queue", "RabbitMQ connected at", "heap: ",
                "RabbitMQ outbox delivered", "asked to register the first admin",
                "consumer: the streams' buffers were emptied")


class StartupDetails(logging.Filter):
    """Let through a console handler what is not start-up or rebalance detail (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True for a record the console shows."""
        if record.levelno >= logging.WARNING:
            return True
        if not record.name.startswith(SHOP_LOGGERS) or any(
                path in record.pathname for path in LIBRARY_PATHS):
            return False
        message = record.getMessage()
        return not message.startswith("[^") and not message.startswith(SHOP_DETAILS)


def settle_root_logger(root: logging.Logger, level: int) -> None:
    """Take the start-up spinner's handlers off ``root`` and set it to ``level``."""
    for handler in [h for h in root.handlers if isinstance(h, SpinnerHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


class ShopWorker(faust.Worker):
    """Faust's worker; after start-up, the root logger is at the level it was started with,
    and the console shows one line per state change (see the module's docstring)."""

    #: The level the worker was started with (``-l``); Faust's default is WARN.
    level_asked: int = logging.WARNING
    #: When the worker began to start or to rebalance (monotonic seconds).
    since: float = 0.0

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Remember the level asked for, keep details off the console below DEBUG, then let
        Faust set up its spinner."""
        self.level_asked = level or logging.WARNING
        if self.level_asked > logging.DEBUG:
            for handler in logger.handlers:
                handler.addFilter(StartupDetails())
        super().on_setup_root_logger(logger, level)
        # The first line the console can show: logging is set up from here on.
        conf = self.app.conf
        log.info("worker starting: app %s, broker %s, web %s", conf.id,
                 ";".join(str(url) for url in conf.broker), conf.canonical_url)

    async def on_first_start(self) -> None:
        """Follow the worker's rebalances from now on."""
        self.since = time.monotonic()
        self.app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        self.app.on_rebalance_complete.connect(cast(Any, self._on_rebalanced))
        await super().on_first_start()

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        if self.since == 0.0:
            self.since = time.monotonic()
            revoked = args[0] if args else kwargs.get("revoked", ())
            log.info("worker rebalancing: the group's partitions move (%d given up here)",
                     len(revoked))

    async def _on_rebalanced(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        assigned = len(self.app.consumer.assignment())
        log.info("worker ready in %.1f s: %d partitions", time.monotonic() - self.since,
                 assigned)
        self.since = 0.0

    async def on_startup_finished(self) -> None:
        """The worker has started: the spinner is done, so is its DEBUG root logger."""
        await super().on_startup_finished()
        settle_root_logger(logging.getLogger(), self.level_asked)

    async def on_stop(self) -> None:
        """Say the worker is stopping."""
        log.info("worker stopping")
        await super().on_stop()

    async def on_shutdown(self) -> None:
        """Say the worker has stopped."""
        await super().on_shutdown()
        log.info("worker stopped")

    async def _sentinel_task(self) -> None:
        """The last task before the loop closes (module docstring)."""
        await asyncio.sleep(LAST_PASS_S)
