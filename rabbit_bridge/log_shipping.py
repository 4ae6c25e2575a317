"""Shipping log records to ``shop.logs``: a logging handler on the root logger and its task.

Every part of the app logs with the standard ``logging`` module; at worker start
:class:`LogShipping` puts a :class:`ShippingHandler` on the root logger (level
``SHOP_LOG_LEVEL``; ``SHOP_LOG_SHIPPING=off`` leaves it out). ``emit()`` only formats the
message and appends the record to a queue in memory: on the event loop's thread directly,
from any other thread through ``loop.call_soon_threadsafe``. One task turns the queued
records into JSON (:func:`rabbit_bridge.log_records.log_json`) every few milliseconds and
hands them to the publisher — the records of one routing key together, as one message
holding a JSON array of their texts — which is itself non-blocking and keeps them in
its durable outbox while RabbitMQ is down. Every record carries its own ``event_id`` (this
worker's run id and a count); the message's id is its last record's, and its
``x-shop-records`` header says how many it holds, so the consumer can store the array as it
came and still store a duplicate delivery once.

No feedback loop: records of the bridge and of its AMQP client are never shipped, and nor is
anything logged by the shipping task itself (a context variable marks it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from mode import Service
from prometheus_client import Counter

from rabbit_bridge.log_records import log_json, ships
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.topology import LOGS_EXCHANGE

__all__ = ["RECORDS_HEADER", "LogShipping", "ShippingHandler"]

DROPPED = Counter("shop_log_records_dropped_total",
                  "Log records not shipped because the shipping queue was full")
SHIPPED = Counter("shop_log_records_shipped_total",
                  "Log records handed to the RabbitMQ publisher")

#: Set in the shipping task's context: what it logs is never shipped.
_SHIPPING: ContextVar[bool] = ContextVar("shop_log_shipping", default=False)
#: Most records held in memory before the oldest new ones are dropped (and counted).
MAX_PENDING = 100_000
#: Most records encoded before the shipping task lets other tasks run.
SHIP_BATCH = 1_000
#: Most records in one RabbitMQ message (a JSON array of records of one routing key).
PER_MESSAGE = 200
#: Seconds the shipping task lets records gather before encoding them: RabbitMQ's cost (and
#: the publisher's and consumer's) is per message, so a view that logs at 1,000 requests/s
#: sends ~20 messages a second (a 5 ms linger sent ~200, and cost the view ~10% of its CPU).
SHIP_LINGER_S = 0.05
#: The header of a message of the shipping handler's: how many records its JSON array holds.
RECORDS_HEADER = "x-shop-records"
Accept = Callable[[logging.LogRecord, str], None]


class ShippingHandler(logging.Handler):
    """Hands each record (with its formatted message) to ``accept`` on the event loop."""

    def __init__(self, accept: Accept, loop: asyncio.AbstractEventLoop,
                 level: int | str = logging.INFO, library_level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.accept = accept
        self.loop = loop
        self.library_level = library_level
        self._loop_thread = threading.get_ident()
        self._inside = threading.local()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit ``record`` without the handler's lock (``emit`` is thread-aware:
        another thread's record is handed to the event loop)."""
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for shipping; never block, never recurse."""
        if _SHIPPING.get() or getattr(self._inside, "active", False):
            return
        if not ships(record, self.library_level):
            return
        self._inside.active = True
        try:
            message = record.getMessage()
            if threading.get_ident() == self._loop_thread:
                self.accept(record, message)
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.accept, record, message)
        except Exception:
            self.handleError(record)
        finally:
            self._inside.active = False


class LogShipping(Service):
    """Ships the worker's log records to ``shop.logs`` through the publisher."""

    def __init__(self, publisher: RabbitPublisher, *, worker: str, level: str = "INFO",
                 enabled: bool = True, max_pending: int = MAX_PENDING, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.publisher = publisher
        self.worker = worker
        self.level = level
        self.enabled = enabled
        self.max_pending = max_pending
        self.handler: ShippingHandler | None = None
        self._records: deque[tuple[logging.LogRecord, str]] = deque()
        self._wakeup = asyncio.Event()
        #: Event ids are this run's id and a count: unique, and cheaper than a uuid each.
        self._run_id = uuid.uuid4().hex[:16]
        self._count = 0
        self._worker_json = json.dumps(worker)

    def accept(self, record: logging.LogRecord, message: str) -> None:
        """Queue one record (on the event loop's thread); drop it if the queue is full."""
        if len(self._records) >= self.max_pending:
            DROPPED.inc()
            return
        self._records.append((record, message))
        if not self._wakeup.is_set():
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Return how many records wait to be encoded."""
        return len(self._records)

    def install(self, logger: logging.Logger | None = None) -> ShippingHandler:
        """Put the shipping handler on ``logger`` (default: the root logger)."""
        self.handler = ShippingHandler(self.accept, asyncio.get_running_loop(), self.level)
        (logger or logging.getLogger()).addHandler(self.handler)
        return self.handler

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        """Take the shipping handler off ``logger`` (default: the root logger)."""
        if self.handler is not None:
            (logger or logging.getLogger()).removeHandler(self.handler)
            self.handler = None

    def ship_pending(self, limit: int | None = None) -> int:
        """Encode queued records and hand them to the publisher; return how many.

        Records of one routing key go together, up to ``PER_MESSAGE`` in one message (a JSON
        array): RabbitMQ's cost is per message, on the way in and out.
        """
        token = _SHIPPING.set(True)
        shipped = 0
        groups: dict[str, list[str]] = {}  # routing key -> its records' JSON texts
        last_ids: dict[str, str] = {}  # routing key -> the event id of its last record
        run_id, count, worker = self._run_id, self._count, self._worker_json
        try:
            while self._records and (limit is None or shipped < limit):
                record, message = self._records.popleft()
                count += 1
                event_id = f"{run_id}-{count:x}"
                key, text = log_json(record, message, worker, event_id)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = []
                group.append(text)
                last_ids[key] = event_id
                if len(group) >= PER_MESSAGE:
                    self._publish(key, groups.pop(key), event_id)
                shipped += 1
            for key, group in groups.items():
                self._publish(key, group, last_ids[key])
        finally:
            self._count = count
            _SHIPPING.reset(token)
        SHIPPED.inc(shipped)
        return shipped

    def _publish(self, key: str, records: list[str], last_id: str) -> None:
        """Publish ``records`` (JSON texts) as one JSON array, its message id the last's."""
        self.publisher.publish(LOGS_EXCHANGE, key, f"[{','.join(records)}]".encode(),
                               message_id=last_id, headers={RECORDS_HEADER: len(records)})

    async def on_start(self) -> None:
        """Install the handler on the root logger (unless shipping is off)."""
        if self.enabled:
            self.install()

    async def on_stop(self) -> None:
        """Take the handler off and hand what is left to the publisher."""
        self.uninstall()
        self.ship_pending()

    @Service.task
    async def _ship(self) -> None:
        _SHIPPING.set(True)  # this task's own records are never shipped
        while not self.should_stop:
            if not self._records:
                self._wakeup.clear()
                await self.wait_first(self._wakeup.wait(), timeout=1.0)
                continue
            await asyncio.sleep(SHIP_LINGER_S)  # let a group of records gather
            while self._records:  # all of them, a batch at a time, letting others run
                self.ship_pending(SHIP_BATCH)
                await asyncio.sleep(0)
