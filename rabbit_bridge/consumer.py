"""Consuming a durable RabbitMQ queue: a Faust service per queue, duplicates passed over.

``QueueConsumer(rabbit, declare=..., handle=...)`` waits for the connection, opens its own
channel with a prefetch limit, declares its queue (and whatever the queue needs) with
``declare(channel)``, and calls ``handle(message)`` for each delivery. A message is
acknowledged after its handler returns; a handler that raises gets the message rejected
without requeue (so a queue with a dead-letter exchange sends it there) unless the consumer
was made with ``requeue_on_error``. aio-pika's robust channel re-declares the queue and
resumes consuming after a reconnect.

The publisher may deliver a message twice (a confirm lost with the connection); every message
carries a ``message_id``, and the consumer remembers the last ids it handled and acknowledges
a repeat without handling it again. Handlers stay idempotent for the repeats this memory
cannot see (after a restart).

A message that carries the id of the request that caused it (the ``shop-request-id`` header,
models/tracing.py) is handled with that id current, so what its handler logs carries it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from mode import Service
from prometheus_client import Counter

from models.tracing import REQUEST_ID, header_request_id
from rabbit_bridge.connection import RabbitConnection

__all__ = ["QueueConsumer", "RecentIds"]

log = logging.getLogger(__name__)

CONSUMED = Counter("shop_rabbit_consumed_total",
                   "Messages taken from RabbitMQ queues, by queue and outcome",
                   ["queue", "outcome"])

Declare = Callable[[AbstractChannel], Awaitable[AbstractQueue]]
Handle = Callable[[AbstractIncomingMessage], Awaitable[None]]


class RecentIds:
    """The last ``size`` message ids seen, oldest forgotten first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, message_id: str | None) -> bool:
        """Return True if ``message_id`` was seen before; remember it either way."""
        if not message_id:
            return False
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return True
        self._ids[message_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def forget(self, message_id: str | None) -> None:
        """Forget ``message_id`` (its handling failed: a redelivery must be handled)."""
        if message_id:
            self._ids.pop(message_id, None)


class QueueConsumer(Service):
    """Consumes one durable queue, handling each message once."""

    def __init__(self, connection: RabbitConnection, *, name: str, declare: Declare,
                 handle: Handle, prefetch: int = 200, requeue_on_error: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rabbit = connection
        self.name = name
        self.declare = declare
        self.handle = handle
        self.prefetch = prefetch
        self.requeue_on_error = requeue_on_error
        self.recent = RecentIds()
        self.queue: AbstractQueue | None = None
        self._channel: AbstractChannel | None = None

    @property
    def consuming(self) -> bool:
        """Return True while the queue is being consumed."""
        return self.queue is not None and self._channel is not None and (
            not self._channel.is_closed)

    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop and self.queue is None:
            connection = self.rabbit.connection
            if connection is None or not self.rabbit.is_connected:
                await self.sleep(0.2)
                continue
            try:
                self._channel = await connection.channel()
                await self._channel.set_qos(prefetch_count=self.prefetch)
                queue = await self.declare(self._channel)
                await queue.consume(self._on_message)
                self.queue = queue
                log.info("consuming RabbitMQ queue %s", queue.name)
            except Exception as exc:
                log.warning("cannot consume %s yet: %s: %s; retrying in 1 s", self.name,
                            type(exc).__name__, exc)
                await self.sleep(1.0)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self.recent.seen(message.message_id):
            CONSUMED.labels(self.name, "duplicate").inc()
            await message.ack()
            return
        request_id = header_request_id(message.headers)
        token = REQUEST_ID.set(request_id) if request_id else None
        try:
            await self.handle(message)
        except Exception:
            log.exception("%s: handling message %s failed", self.name, message.message_id)
            CONSUMED.labels(self.name, "failed").inc()
            self.recent.forget(message.message_id)
            await message.reject(requeue=self.requeue_on_error)
            return
        finally:
            if token is not None:
                REQUEST_ID.reset(token)
        CONSUMED.labels(self.name, "handled").inc()
        await message.ack()

    async def on_stop(self) -> None:
        """Close the channel (unacknowledged messages go back to the queue)."""
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None
        self.queue = None
