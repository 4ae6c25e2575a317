"""The logging consumer: ``logs.central`` into this worker's log store, alerts on ERROR.

Every worker consumes the one durable queue ``logs.central`` (bound to ``shop.logs`` with
``#``), so each worker's store holds a share of the records; ``GET /api/admin/logs``
gathers them from every worker (web/admin.py). A message holds one record (a JSON object) or
several (a JSON array, as the shipping handler sends them). The shipping handler's arrays
below the alert level (its ``x-shop-records`` header, the level in the routing key) are
stored as they came, one line each, without being decoded; everything else is decoded and
checked. Deliveries are written in groups by one writer thread and acknowledged once written:
the consumer handles up to ``prefetch`` messages at once, and those that arrive while a write
is under way go in the next one. A record stored before (same ``event_id``; for an array as
it came, its last record's, which is its message id) is acknowledged and not stored again.

An ERROR or CRITICAL record is an alert: it stays in the store (``GET /api/admin/alerts``
reads the alerts back) and its ``admin_alert`` event is handed to ``send_alert``, given by
``wiring.py``: the notifications agent's ``send_admin_alert`` puts it on the Kafka
``notifications`` topic, keyed ``admins``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from mode import Service
from prometheus_client import Counter

from models.tracing import REQUEST_ID, valid_id
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.consumer import QueueConsumer
from rabbit_bridge.log_records import level_number
from rabbit_bridge.log_shipping import RECORDS_HEADER
from rabbit_bridge.log_store import LogFilter, LogStore
from rabbit_bridge.topology import LOGS_EXCHANGE, declare_exchange

__all__ = ["ALERT_LEVEL", "LOGS_QUEUE", "CentralLogs", "admin_alert"]

log = logging.getLogger(__name__)

#: The durable queue of every worker's log records.
LOGS_QUEUE = "logs.central"
#: Records at this level and above raise an alert.
ALERT_LEVEL = "ERROR"
#: Most messages the queue holds while no worker consumes it (the oldest go first).
QUEUE_MAX_LENGTH = 1_000_000

_ALERT_NUMBER = level_number(ALERT_LEVEL)

STORED = Counter("shop_log_records_stored_total",
                 "Log records written to this worker's central log store, by outcome",
                 ["outcome"])
ALERTS = Counter("shop_admin_alerts_total", "ERROR and CRITICAL log records seen, by outcome",
                 ["outcome"])


def admin_alert(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the ``admin_alert`` event (for the notifications topic) of a log record."""
    return {
        "type": "admin_alert",
        "event_id": entry["event_id"],
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": entry.get("request_id") or entry.get("correlation_id") or "",
        "schema_version": 1,
        "user_id": "admins",
        "level": entry.get("level"),
        "service": entry.get("service"),
        "message": entry.get("message"),
        "logged_at": entry.get("time"),
        "worker": entry.get("worker"),
    }


class CentralLogs(Service):
    """Consumes ``logs.central`` into a rotating store and raises alerts."""

    def __init__(self, connection: RabbitConnection, folder: Path, *, queue: str = LOGS_QUEUE,
                 binding: str = "#", max_bytes: int = 4 * 1024 * 1024, keep: int = 5,
                 send_alert: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = folder
        self.queue_name = queue
        self.binding = binding
        self.max_bytes = max_bytes
        self.keep = keep
        #: Where each alert's ``admin_alert`` event goes (None: nowhere).
        self.send_alert = send_alert
        self.store: LogStore | None = None
        #: Records stored by this service since it started (duplicates not counted).
        self.stored = 0
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shop-logstore")
        self._batch: list[dict[str, Any]] = []
        #: Arrays of records stored as they came: (last record's event id, JSON, records).
        self._groups: list[tuple[str, bytes, int]] = []
        self._written: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        #: Failed writes are requeued (the disk may recover); bad JSON is dropped and logged.
        self.consumer = QueueConsumer(connection, name=queue, declare=self._declare,
                                      handle=self._handle, prefetch=500, requeue_on_error=True)

    def on_init_dependencies(self) -> list[Service]:
        """Consume with the queue consumer, started once the store is open."""
        return [self.consumer]

    async def on_start(self) -> None:
        """Open the store (reading back the ids of the last records)."""
        self.store = await self._on_disk(LogStore, self.folder, max_bytes=self.max_bytes,
                                         keep=self.keep)

    async def on_stop(self) -> None:
        """Stop consuming, finish the write under way and close the store."""
        await self.consumer.stop()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self.store is not None:
            await self._on_disk(self.store.close)
            self.store = None
        self._disk.shutdown(wait=True)

    async def read(self, chosen: LogFilter, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` stored records matching ``chosen``, newest first."""
        if self.store is None:
            return []
        return await asyncio.to_thread(self.store.read, chosen, limit)

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        exchange = await declare_exchange(channel, LOGS_EXCHANGE)
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments={"x-max-length": QUEUE_MAX_LENGTH})
        await queue.bind(exchange, self.binding)
        return queue

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        group = _stored_as_is(message)
        if group is not None:
            self._groups.append(group)
            await self._written_soon()
            return
        try:
            decoded = json.loads(message.body)
        except ValueError:
            decoded = None
        entries = decoded if isinstance(decoded, list) else [decoded]
        if not entries or not all(isinstance(e, dict) for e in entries):
            log.warning("%s: message %s is not JSON log records; dropped", self.queue_name,
                        message.message_id)
            return
        if len(entries) == 1:
            entries[0].setdefault("event_id", message.message_id or "")
        self._batch.extend(entries)
        await self._written_soon()

    async def _written_soon(self) -> None:
        """Wait until the next group write (started now, or after the one under way) is done."""
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        written = self._written
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        await asyncio.shield(written)

    async def _write_groups(self) -> None:
        while self._batch or self._groups:
            batch, self._batch = self._batch, []
            groups, self._groups = self._groups, []
            written, self._written = self._written, None
            assert written is not None
            try:
                if self.store is None:
                    raise RuntimeError("the log store is closed")
                new, in_groups = await self._on_disk(self._append, batch, groups)
            except Exception as exc:
                written.set_exception(exc)
                written.exception()  # retrieved: each waiter raises it for its message
                continue
            stored = len(new) + in_groups
            self.stored += stored
            STORED.labels("stored").inc(stored)
            STORED.labels("duplicate").inc(len(batch) + sum(n for _, _, n in groups) - stored)
            written.set_result(None)
            self._raise_alerts(new)

    def _append(self, batch: list[dict[str, Any]], groups: list[tuple[str, bytes, int]],
                ) -> tuple[list[dict[str, Any]], int]:
        """Store ``batch`` and ``groups``; return the new records of ``batch`` and how many
        records the new groups hold."""
        assert self.store is not None
        new = self.store.append(batch) if batch else []
        if not groups:
            return new, 0
        fresh = self.store.append_groups([(last, line) for last, line, _ in groups])
        return new, sum(n for (_, _, n), stored in zip(groups, fresh, strict=True) if stored)

    def _raise_alerts(self, batch: list[dict[str, Any]]) -> None:
        threshold = level_number(ALERT_LEVEL)
        alerts = [e for e in batch if level_number(str(e.get("level", ""))) >= threshold]
        if alerts and self.send_alert is not None:
            task = asyncio.create_task(self._send_alerts(alerts))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _send_alerts(self, alerts: list[dict[str, Any]]) -> None:
        assert self.send_alert is not None
        for entry in alerts:
            # The alert carries the request id of the record that raised it, so it is a step
            # of that request's trace too.
            request_id = str(entry.get("request_id") or "")
            token = REQUEST_ID.set(request_id if valid_id(request_id) else "")
            try:
                await self.send_alert(admin_alert(entry))
                ALERTS.labels("sent").inc()
            except Exception as exc:
                ALERTS.labels("failed").inc()
                log.warning("admin alert %s not sent to Kafka: %s: %s", entry.get("event_id"),
                            type(exc).__name__, exc)
            finally:
                REQUEST_ID.reset(token)

    async def _on_disk(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._disk, lambda: call(*args, **kwargs))


def _stored_as_is(message: AbstractIncomingMessage) -> tuple[str, bytes, int] | None:
    """Return (last event id, JSON array, records) for a message stored without decoding.

    That is a JSON array from the shipping handler (its header counts the records and its
    message id is the last record's event id) below the alert level, whose records need no
    look: anything else (a single record, an alert, another publisher's message) is decoded.
    """
    count = (message.headers or {}).get(RECORDS_HEADER)
    body = message.body
    if (not isinstance(count, int) or count < 1 or not message.message_id
            or not body.startswith(b"[") or b"\n" in body):
        return None
    level = (message.routing_key or "").rpartition(".")[2]
    if level_number(level) >= _ALERT_NUMBER:
        return None
    return message.message_id, body, count
