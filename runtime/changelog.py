"""Table changelog records in bulk: one Kafka batch a changelog partition, handed to the client
while no earlier batch is in flight, and all delivered before a source offset is committed.

Faust sends a table write's changelog record on its own: the row is encoded twice (for the
store and for the record), the record goes through ``send_soon`` (a future, the producer
buffer, Faust's sensor, the client's accumulator) and, once delivered, its offset is written
to RocksDB as the partition's persisted offset. In a saturated saga worker that path was an
eighth of the main thread for about twenty writes an order.

:class:`ChangelogBatches` takes a write's record as bytes (encoded once, the same bytes the
store holds) and keeps it with the others of its changelog partition, in order. Group commit:
while an earlier hand-over is being delivered, records accumulate; then everything pending
goes to the client at once, one batch a partition (``create_batch``/``send_batch``), and when
a batch is delivered its last offset becomes the partition's persisted offset (one RocksDB
write a batch). At low load a record is handed over in the next turn of the event loop: no
fixed linger.

The at-least-once promise is the producer's: :meth:`flush` hands over what is pending and
waits for every batch, and the shop's producer calls it first in its own ``flush``, which
Faust awaits before it commits offsets, before it gives up partitions in a rebalance, and
when the worker stops (runtime/transport.py). A batch that cannot be delivered (after the
client's retries) fails that flush and every later one, so no offset past its writes is
committed: Faust's commit fails and the worker stops, as it does when its producer fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from faust.types import TP
from prometheus_client import Counter

__all__ = ["ChangelogBatches", "ChangelogNotDelivered"]

log = logging.getLogger(__name__)

RECORDS = Counter("shop_changelog_records_total",
                  "Table changelog records handed to Kafka in bulk", ["table"])
BATCHES = Counter("shop_changelog_batches_total",
                  "Batches of table changelog records handed to Kafka (one a changelog "
                  "partition and hand-over)")


class ChangelogNotDelivered(RuntimeError):
    """A batch of changelog records was not delivered: no offset past its writes may be
    committed."""


class _Store(Protocol):
    def set_persisted_offset(self, tp: TP, offset: int) -> None: ...


class _Pending:
    """The records of one changelog partition waiting to be handed over, and where the
    partition's persisted offset is kept."""

    __slots__ = ("records", "store", "table")

    def __init__(self, table: str, store: _Store) -> None:
        self.table = table
        self.store = store
        self.records: list[tuple[bytes, bytes | None]] = []


class ChangelogBatches:
    """Changelog records of table writes, handed to the Kafka client in bulk (see the module's
    text). ``client`` returns the started aiokafka producer."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._pending: dict[TP, _Pending] = {}
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._hand_over: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # hand-overs one at a time: a partition's batches in order
        self._failure: BaseException | None = None

    def append(self, table: str, store: _Store, tp: TP, key: bytes,
               value: bytes | None) -> None:
        """Keep the record of a write (``value`` None: a deletion) for changelog ``tp``."""
        pending = self._pending.get(tp)
        if pending is None:
            pending = self._pending[tp] = _Pending(table, store)
        pending.records.append((key, value))
        if self._hand_over is None:
            self._hand_over = asyncio.ensure_future(self._hand_over_soon())

    @property
    def pending(self) -> int:
        """How many records wait to be handed to the client."""
        return sum(len(p.records) for p in self._pending.values())

    async def flush(self) -> None:
        """Hand over every pending record and wait until every batch is delivered; raise
        :class:`ChangelogNotDelivered` if one was not."""
        async with self._lock:
            with contextlib.suppress(Exception):  # kept as the failure, raised below
                await self._send_pending()
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))
        if self._failure is not None:
            raise ChangelogNotDelivered(
                f"table changelog records were not delivered: {self._failure!r}; no offset "
                "will be committed past them (restart the worker once Kafka answers: the "
                "events are read again from the last commit)") from self._failure

    async def _hand_over_soon(self) -> None:
        """Hand over what is pending once no earlier batch is in flight (group commit)."""
        try:
            await asyncio.sleep(0)  # the rest of this turn's writes join the batch
            while self._pending:
                if self._in_flight:
                    await asyncio.wait(list(self._in_flight))
                    continue  # more may have joined meanwhile
                async with self._lock:
                    await self._send_pending()
        except Exception:  # kept as the failure: every later flush raises it
            log.exception("handing table changelog records to Kafka failed")
        finally:
            self._hand_over = None  # the loop ends with nothing pending, or after a failure

    async def _send_pending(self) -> None:
        """Send everything pending, one batch (or more, if large) a partition, in order.

        Records that could not be handed over are lost to the changelog: the failure stays,
        so that no later flush lets an offset past them be committed."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            await self._send(pending)
        except Exception as exc:
            self._failure = self._failure or exc
            raise

    async def _send(self, pending: dict[TP, _Pending]) -> None:
        client = self._client()
        for tp, waiting in pending.items():
            records = waiting.records
            start = 0
            while start < len(records):
                batch = client.create_batch()
                count = 0
                for key, value in records[start:]:
                    # None: the batch is full (a batch's first record always fits)
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        break
                    count += 1
                batch.close()
                delivered = await client.send_batch(batch, tp.topic, partition=tp.partition)
                self._track(delivered, waiting, tp, count)
                start += count
            RECORDS.labels(waiting.table).inc(len(records))

    def _track(self, delivered: asyncio.Future[Any], waiting: _Pending, tp: TP,
               count: int) -> None:
        BATCHES.inc()
        self._in_flight.add(delivered)

        def done(future: asyncio.Future[Any]) -> None:
            self._in_flight.discard(future)
            if future.cancelled():
                self._failure = self._failure or asyncio.CancelledError()
                return
            failure = future.exception()
            if failure is not None:
                self._failure = self._failure or failure
                log.error("a batch of %d %s changelog records to %s was not delivered: %r",
                          count, waiting.table, tp, failure)
                return
            waiting.store.set_persisted_offset(tp, future.result().offset + count - 1)

        delivered.add_done_callback(done)
