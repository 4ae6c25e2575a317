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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from faust.transport.drivers.aiokafka import Producer, Transport
from faust.transport.producer import ProducerBuffer
from faust.types import AppT
from faust.types.transports import ConsumerT, ProducerT
from faust.types.tuples import FutureMessage
from mode import Service
from prometheus_client import Counter, Gauge

from runtime.changelog import ChangelogBatches
from runtime.consumer import ShopConsumer

__all__ = [
    "DrainingProducerBuffer", "ShopProducer", "ShopTransport", "answer_within", "broker_topics",
    "waiting_batches",
]

log = logging.getLogger(__name__)

#: A flush still waiting after this long says so in the log (and keeps waiting).
FLUSH_WARN_S = 5.0
#: How long Faust's own flush waits for the next message before it gives up.
FAUST_GIVES_UP_S = 0.1

#: How often the producer looks at what waits in its client, and how old the oldest waiting
#: batch may get before the log says so (again every STALL_REPEAT_S while it lasts).
STALL_CHECK_S = 5.0
STALL_WARN_S = 10.0
STALL_REPEAT_S = 30.0

WAITING_AGE = Gauge(
    "shop_producer_oldest_waiting_seconds",
    "Age of the oldest batch of messages waiting in the Kafka client to be sent (0: none "
    "waits), read every few seconds",
)
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


def answer_within(client: Any, seconds: float) -> None:
    """Make an aiokafka producer ``client`` (not started) give up on an unanswered request
    after ``seconds``, close the connection and send the request's batches again, without
    shortening how long its messages may wait to be delivered.

    aiokafka has one ``request_timeout_ms`` for both: a request answered later than that
    fails, and its batches are sent again only if they are younger than it, so the same short
    value would fail every message caught in a lost reply. Faust's 20 minutes keep the
    messages but let one lost reply hold the worker's sends that long. The connections take
    their timeout from the client (``_request_timeout_ms``, read when each connects), and the
    produce requests ask the broker to answer within the same time (the sender's)."""
    answer_ms = int(seconds * 1000)
    client.client._request_timeout_ms = answer_ms
    client._sender._request_timeout_ms = answer_ms


def waiting_batches(batches: Mapping[Any, Sequence[Any]], now: float) -> tuple[int, float]:
    """Return how many batches wait in an aiokafka client's accumulator (``batches``: its
    ``_batches``, a deque of batches a partition, oldest first) and the oldest one's age."""
    count = 0
    oldest = now
    for queue in batches.values():
        if queue:
            count += len(queue)
            oldest = min(oldest, queue[0]._ctime)
    return count, now - oldest


class ShopProducer(Producer):
    """Faust's aiokafka producer with :class:`DrainingProducerBuffer`, and the tables'
    changelog records in bulk (:class:`runtime.changelog.ChangelogBatches`; not with Faust's
    threaded producer, whose client lives in another thread's loop).

    Its client sends one produce request at a time to each broker, so a request left
    unanswered holds every later message until ``SHOP_PRODUCER_REQUEST_TIMEOUT`` runs out
    (:func:`answer_within`), and a flush (before each offset commit) waits for them without
    a word. Every few seconds the producer reads the age of the oldest batch waiting in the
    client to be sent (``shop_producer_oldest_waiting_seconds``; a batch in flight is not
    counted, what queues behind it is) and logs a warning naming the brokers it waits for
    once that passes ``STALL_WARN_S``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = DrainingProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        if self.threaded_producer is not None:
            buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer
        self._stall_warned = 0.0
        self.changelog_batches: ChangelogBatches | None = (
            None if self.threaded_producer is not None
            else ChangelogBatches(self._ensure_producer))

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        """Faust's aiokafka client, answering within ``SHOP_PRODUCER_REQUEST_TIMEOUT``."""
        client = super()._new_producer(transactional_id)
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            answer_within(client, settings.producer_request_timeout)
        return client

    async def flush(self) -> None:
        """Deliver the tables' pending changelog records, then flush as Faust does."""
        if self.changelog_batches is not None:
            await self.changelog_batches.flush()
        await super().flush()

    @Service.timer(STALL_CHECK_S)
    async def _watch_waiting(self) -> None:
        if self._producer is not None and self.threaded_producer is None:
            self.look_at_waiting(self._producer, time.monotonic())

    def look_at_waiting(self, client: Any, now: float) -> None:
        """Report the age of the oldest batch waiting in ``client``; warn (at most every
        STALL_REPEAT_S) while it is older than STALL_WARN_S."""
        count, age = waiting_batches(client._message_accumulator._batches, now)
        WAITING_AGE.set(age)
        if age < STALL_WARN_S:
            self._stall_warned = 0.0
        elif now - self._stall_warned >= STALL_REPEAT_S:
            self._stall_warned = now
            sender = client._sender
            log.warning(
                "producer: %d batch(es) of messages wait to be sent, the oldest for %.0f s; "
                "a produce request is in flight to broker(s) %s (sent again on a new "
                "connection once SHOP_PRODUCER_REQUEST_TIMEOUT=%.0f s passes without an "
                "answer)", count, age, sorted(sender._in_flight) or "none",
                client.client._request_timeout_ms / 1000)


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
