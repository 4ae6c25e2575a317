"""The publisher: confirmed publishes to RabbitMQ, and a durable outbox when it can't take them.

``publisher.publish(exchange, routing_key, body, message_id=...)`` never blocks and never
fails because of RabbitMQ: it hands the message to one sending task. That task publishes
batches with publisher confirms while RabbitMQ is up and the outbox is empty. When RabbitMQ
is unreachable, or a publish is not confirmed, the message and every later one go to the
durable outbox (:mod:`rabbit_bridge.outbox`), which the same task delivers oldest first once
RabbitMQ is back, so a routing key's messages keep their order. A message may be delivered
twice (a confirm lost with the connection); each carries a ``message_id`` that consumers use
to make the duplicate harmless.

What is in memory (at most one batch, milliseconds) is moved to the outbox when the worker
stops; a ``kill -9`` can lose that batch, never the outbox. Messages that are part of a state
change (a promotion's announcements, a user's mail) are published ``durable``: written to the
outbox before ``publish`` returns, they survive even that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from mode import Service
from prometheus_client import Counter, Gauge

from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.outbox import Outbox, OutgoingMessage
from rabbit_bridge.topology import EXCHANGES, PROMOTIONS_EXCHANGE, declare_exchange

__all__ = ["RabbitPublisher"]

#: This module logs through a logger the RabbitMQ log handler ignores (no feedback loop).
log = logging.getLogger(__name__)

OUTBOX_DEPTH = Gauge("shop_rabbit_outbox_depth",
                     "Messages in the durable outbox, waiting for RabbitMQ")
PUBLISHED = Counter("shop_rabbit_published_total",
                    "Messages confirmed by RabbitMQ, by exchange and path",
                    ["exchange", "path"])
DEFERRED = Counter("shop_rabbit_deferred_total",
                   "Messages written to the durable outbox instead of RabbitMQ",
                   ["exchange"])

#: Most messages published (and confirmed) in one go.
BATCH = 500
#: Seconds a publish may wait for its confirm before it counts as failed.
CONFIRM_TIMEOUT_S = 10.0
#: Exchanges that may have no queue bound: an unroutable message there is not an error.
UNROUTED_OK = frozenset({PROMOTIONS_EXCHANGE})

T = TypeVar("T")


class RabbitPublisher(Service):
    """Publishes with confirms; keeps what RabbitMQ can't take in a durable outbox."""

    def __init__(self, connection: RabbitConnection, outbox_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rabbit = connection
        self.outbox_path = outbox_path
        self._outbox: Outbox | None = None
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shop-outbox")
        self._pending: deque[OutgoingMessage] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    # -- the API --------------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, body: bytes | dict[str, Any], *,
                message_id: str | None = None, headers: dict[str, Any] | None = None,
                durable: bool = False) -> str:
        """Queue a message for ``exchange`` (JSON for a dict); return its message id.

        ``durable`` writes it to the outbox file before returning (about a tenth of a
        millisecond), so not even a ``kill -9`` right after loses it: for what an agent
        publishes as part of a state change, before its offset is committed. A routing key's
        messages are all durable or all not (the two paths keep their own order).
        """
        if exchange != "" and exchange not in EXCHANGES:
            raise ValueError(f"unknown exchange {exchange!r}; the shop's are {list(EXCHANGES)}")
        data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        mid = message_id or uuid.uuid4().hex
        message = OutgoingMessage(exchange, routing_key, mid, data, time.time(),
                                  dict(headers or {}))
        if durable:
            self.publish_durable([message])
        else:
            self._pending.append(message)
            self._idle.clear()
            self._wakeup.set()
        return mid

    def publish_durable(self, messages: Sequence[OutgoingMessage]) -> None:
        """Write ``messages`` to the outbox file in one go before returning (see ``publish``).

        Before the outbox is open (the service not started yet) they wait in memory.
        """
        if not messages:
            return
        for message in messages:
            if message.exchange != "" and message.exchange not in EXCHANGES:
                raise ValueError(f"unknown exchange {message.exchange!r}")
        if self._outbox is not None:
            self._disk.submit(self._outbox.append, list(messages)).result()
            OUTBOX_DEPTH.set(self._outbox.depth)
        else:
            self._pending.extend(messages)
        self._idle.clear()
        self._wakeup.set()

    @property
    def outbox_depth(self) -> int:
        """Return how many messages wait in the durable outbox."""
        return self._outbox.depth if self._outbox else 0

    @property
    def pending(self) -> int:
        """Return how many messages wait in memory for the sending task."""
        return len(self._pending)

    async def flush(self, within: float = 10.0) -> bool:
        """Wait until every message so far is confirmed or in the outbox; return if it is."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    # -- the service ----------------------------------------------------------------------

    async def on_start(self) -> None:
        """Open the outbox (messages left by an earlier run are delivered first)."""
        self._outbox = await self._on_disk(Outbox, self.outbox_path)
        OUTBOX_DEPTH.set(self._outbox.depth)
        if self._outbox.depth:
            log.info("RabbitMQ outbox holds %d messages from an earlier run; delivering them",
                     self._outbox.depth)

    async def on_stop(self) -> None:
        """Keep what is still in memory in the outbox, and close it."""
        if self._outbox is not None:
            leftover = list(self._pending)
            self._pending.clear()
            await self._on_disk(self._outbox.append, leftover)
            OUTBOX_DEPTH.set(self._outbox.depth)
            await self._on_disk(self._outbox.close)
            self._outbox = None
        self._disk.shutdown(wait=True)

    @Service.task
    async def _send(self) -> None:
        while not self.should_stop:
            if not self._pending and not (self.outbox_depth and self._channel_ready()):
                self._idle.set()
                self._wakeup.clear()
                await self.wait_first(self._wakeup.wait(), timeout=1.0)
                if not self._channel_ready():
                    await self._open_channel()
                continue
            try:
                await self._send_some()
            except Exception:  # never let the sender die: the outbox keeps everything
                log.exception("RabbitMQ publisher: unexpected error; retrying in 1 s")
                await self.sleep(1.0)

    async def _send_some(self) -> None:
        """Deliver the outbox first, else publish the next batch from memory."""
        assert self._outbox is not None
        batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
        if not self._channel_ready():
            await self._open_channel()
        if self._outbox.depth or not self._channel_ready():
            await self._defer(batch)
            if self._channel_ready():
                await self._deliver_outbox()
            else:
                await self.sleep(0.5)
            return
        delivered = await self._publish_in_order(batch)
        await self._defer(batch[delivered:])
        _count_published(batch[:delivered], "direct")

    async def _deliver_outbox(self) -> None:
        assert self._outbox is not None
        stored = await self._on_disk(self._outbox.oldest, BATCH)
        delivered = await self._publish_in_order([s.message for s in stored])
        if delivered:
            await self._on_disk(self._outbox.remove_through, stored[delivered - 1].seq)
            OUTBOX_DEPTH.set(self._outbox.depth)
            _count_published([s.message for s in stored[:delivered]], "outbox")
            if not self._outbox.depth:
                log.info("RabbitMQ outbox delivered; publishing directly again")
        else:
            await self.sleep(0.5)  # RabbitMQ refuses the oldest: try again soon

    async def _publish_in_order(self, batch: Sequence[OutgoingMessage]) -> int:
        """Publish ``batch`` (one channel keeps its order); return how many, from the
        start, were confirmed."""
        if not batch:
            return 0
        results = await asyncio.gather(*(self._publish_one(m) for m in batch),
                                       return_exceptions=True)
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                log.warning("RabbitMQ did not confirm %s to %r (%s: %s); keeping it and %d "
                            "later messages in the outbox", batch[index].message_id,
                            batch[index].exchange or "(default)", type(result).__name__,
                            result, len(batch) - index - 1)
                return index
        return len(batch)

    async def _publish_one(self, message: OutgoingMessage) -> None:
        exchange = self._exchanges.get(message.exchange)
        if exchange is None:
            raise ConnectionError("no channel to RabbitMQ")
        await exchange.publish(
            aio_pika.Message(
                message.body, message_id=message.message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=message.created_at, headers=message.headers or None),
            message.routing_key,
            mandatory=message.exchange not in UNROUTED_OK,
            timeout=CONFIRM_TIMEOUT_S,
        )

    async def _defer(self, messages: Sequence[OutgoingMessage]) -> None:
        assert self._outbox is not None
        if not messages:
            return
        await self._on_disk(self._outbox.append, list(messages))
        OUTBOX_DEPTH.set(self._outbox.depth)
        for message in messages:
            DEFERRED.labels(message.exchange or "(default)").inc()

    def _channel_ready(self) -> bool:
        channel = self._channel
        return (self.rabbit.is_connected and channel is not None and not channel.is_closed
                and len(self._exchanges) == len(EXCHANGES) + 1)

    async def _open_channel(self) -> None:
        connection = self.rabbit.connection
        if connection is None or not self.rabbit.is_connected:
            return
        try:
            if self._channel is None or self._channel.is_closed:
                self._exchanges = {}
                self._channel = await connection.channel(publisher_confirms=True,
                                                         on_return_raises=True)
            for name in ("", *EXCHANGES):
                if name not in self._exchanges:
                    self._exchanges[name] = await declare_exchange(self._channel, name)
        except Exception as exc:
            log.warning("RabbitMQ publisher channel not open yet: %s: %s",
                        type(exc).__name__, exc)

    async def _on_disk(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._disk, call, *args)


def _count_published(messages: Sequence[OutgoingMessage], path: str) -> None:
    """Count confirmed ``messages`` by exchange and path (direct or through the outbox)."""
    for message in messages:
        PUBLISHED.labels(message.exchange or "(default)", path).inc()
