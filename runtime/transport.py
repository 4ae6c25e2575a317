"""Faust's aiokafka transport with a producer buffer whose flush really waits (and the
consumer of :mod:`runtime.consumer`).

Every table write sends its changelog record through Faust's producer buffer (``send_soon``),
and at-least-once rests on one promise: before a consumer offset is committed, the
producer is flushed, so every changelog record and message caused by the events below that
offset is on the broker. Faust's ``ProducerBuffer.flush`` breaks that promise under load: it
waits at most 0.1 s for the buffer's next message to go out and then *returns*, with
records still in the buffer (faust/transport/producer.py, ``flush_atmost``). The commit goes
ahead; a worker killed then has committed offsets past updates whose changelog records never
left, and the worker that takes its partitions restores a table without them and does not
replay the events either: the update is lost for good (an analytics session one event short,
an order that answers 404, a stock hold nobody releases — all seen after a SIGKILL on a
loaded two-core machine).

:class:`DrainingProducerBuffer` counts the messages put into the buffer and those handed to
the Kafka client, and ``flush`` waits until everything put before it was called has been
handed over (then Faust's producer flush waits for the client's own batches). Messages put
while a flush waits do not hold it up, so a busy agent cannot starve a commit.
Used with every broker (``ShopApp._new_transport``); :mod:`runtime.tansu_compat` builds on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar, cast

from faust.transport.drivers.aiokafka import Producer, Transport
from faust.transport.producer import ProducerBuffer
from faust.types import AppT
from faust.types.transports import ConsumerT, ProducerT
from faust.types.tuples import FutureMessage
from mode import Service
from prometheus_client import Counter

from runtime.changelog import ChangelogBatches
from runtime.consumer import ShopConsumer

__all__ = ["DrainingProducerBuffer", "ShopProducer", "ShopTransport", "broker_topics"]

log = logging.getLogger(__name__)

#: A flush still waiting after this long says so in the log (and keeps waiting).
FLUSH_WARN_S = 5.0
#: How long Faust's own flush waits for the next message before it gives up.
FAUST_GIVES_UP_S = 0.1

SLOW_FLUSHES = Counter(
    "shop_producer_slow_flushes_total",
    "Producer flushes (before an offset commit) that waited longer than Faust's own flush "
    "would have (0.1 s without a message sent) for buffered messages to go out",
)


class DrainingProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, with a ``flush`` that returns only once it has drained."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.put_count = 0
        self.sent_count = 0

    def put(self, fut: FutureMessage) -> None:
        """Add a message to the buffer (and count it)."""
        super().put(fut)
        self.put_count += 1

    async def flush(self) -> None:
        """Wait until every message put before this call has been handed to the client."""
        if self.app is not None and self.app.conf.producer_threaded:
            await super().flush()  # the threaded producer drains its own queue
            return
        target = self.put_count
        began = time.monotonic()
        warn_at = began + FLUSH_WARN_S
        slow = False
        while self.sent_count < target:
            if self.state != "running":  # stopping: the sending task takes no more
                await self._send_the_rest()
                return
            self.message_sent.clear()
            waited = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.5)
            if time.monotonic() - waited > FAUST_GIVES_UP_S and not slow:
                slow = True
                SLOW_FLUSHES.inc()
            if time.monotonic() > warn_at:
                warn_at += FLUSH_WARN_S
                log.warning("producer flush: %d message(s) still waiting to be sent after "
                            "%.0f s", target - self.sent_count, time.monotonic() - began)

    async def _send_the_rest(self) -> None:
        """Send what is still buffered from here (the worker is stopping)."""
        while not self.pending.empty():
            await self._send_pending(self.pending.get_nowait())
            self.sent_count += 1

    @Service.task
    async def _handle_pending(self) -> None:
        get_pending = self.pending.get
        send_pending = self._send_pending
        while not self.should_stop:
            msg = await get_pending()
            await send_pending(msg)  # a failure crashes the producer: nothing is counted
            self.sent_count += 1
            self.message_sent.set()


class ShopProducer(Producer):
    """Faust's aiokafka producer with :class:`DrainingProducerBuffer`, and the tables'
    changelog records in bulk (:class:`runtime.changelog.ChangelogBatches`; not with Faust's
    threaded producer, whose client lives in another thread's loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = DrainingProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        if self.threaded_producer is not None:
            buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer
        self.changelog_batches: ChangelogBatches | None = (
            None if self.threaded_producer is not None
            else ChangelogBatches(self._ensure_producer))

    async def flush(self) -> None:
        """Deliver the tables' pending changelog records, then flush as Faust does."""
        if self.changelog_batches is not None:
            await self.changelog_batches.flush()
        await super().flush()


class ShopTransport(Transport):
    """Faust's aiokafka transport with :class:`ShopProducer` and :class:`ShopConsumer`."""

    Consumer: ClassVar[type[ConsumerT]] = ShopConsumer
    Producer: ClassVar[type[ProducerT]] = ShopProducer


async def broker_topics(app: AppT) -> dict[str, int]:
    """Return every topic the broker knows, with its number of partitions, as the app's
    producer client reads the cluster's metadata (Faust has no public call for it)."""
    client = cast(Any, app.producer)._ensure_producer().client
    metadata = await client.fetch_all_metadata()
    return {name: len(metadata.partitions_for_topic(name) or ()) for name in metadata.topics()}
