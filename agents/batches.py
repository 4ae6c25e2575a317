"""Batches of an agent's stream, acknowledged once the batch is handled.

For agents whose events are many and cheap to fold together (tracked behaviour, sales
counts, item pairs, order notices): a batch is decoded event by event (what does not decode
is dead-lettered, as everywhere) and written once per row.

:func:`ready_batches` is Faust's ``take_events`` with a short wait (WITHIN_S): Faust turns
the stream's own acknowledgement off and acknowledges a batch's events once the agent asks
for the next batch, so an offset is committed only after the batch that holds it was
handled (at-least-once, as everywhere). A loop of our own over ``stream.noack()`` with
manual acknowledgements was tried and lost events under load (an analytics session a few
events short after a failover, in about half the runs on a loaded machine; with
``take_events``, none in the same runs): keep to Faust's way.

One check is added to Faust's way: a batch handles only events fetched in the consumer's
current generation (:func:`current_events`). Faust drops an older generation's messages as
they enter a stream, but ``take_events`` may still hold some in its buffer when a rebalance
ends (the wait for them gave up, or the worker was dropped from the group while it waited).
Handling them then would write a partition the worker may no longer own, racing its new
owner's writes on the changelog; after every rebalance Faust seeks each partition back to
its committed offset, so whoever owns it now reads those events again. They are marked done
without being acknowledged, so their offsets are never committed by this worker.
"""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from faust.streams import _current_event
from faust.types import EventT, StreamT
from prometheus_client import Counter

from agents.dead_letters import dead_letter
from models.base import Event, EventTypes, decode_event
from runtime.positions import APPLIERS, positions
from runtime.streams import take_ready
from tables.replay import Position, Row, update_many

E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)

__all__ = ["FOLD_WITHIN_S", "WITHIN_S", "Decoded", "Failures", "WriteBack", "current_events",
           "decode_batch", "distinct_messages", "fold_batches", "fold_into", "handle_batches",
           "in_partition_of", "note_applied", "ready_batches"]

#: How long a batch waits to fill before it is handled with what it has (s).
WITHIN_S = 0.05
#: The same for an agent off an order's path whose batches fold into rows (the analytics
#: windows, the item model, the day's sales): a row a batch changes is written once however
#: many events reach it, so under load a longer batch writes less (the item model took 1.4
#: changelog records an order with this against 3.8 with WITHIN_S, over 5,000 orders); what
#: the rows show is at most this much older.
FOLD_WITHIN_S = 0.5


COPIES = Counter("shop_batch_copies_dropped_total",
                 "Second copies of a message in one batch (read again after a rebalance), "
                 "left out of the batch")
BATCHES = Counter("shop_batches_total", "Batches a batched agent took", ["agent"])
BATCH_EVENTS = Counter("shop_batch_events_total",
                       "Events in the batches a batched agent took (divided by "
                       "shop_batches_total: the mean batch)", ["agent"])
STALE = Counter("shop_stale_events_skipped_total",
                "Buffered events of an earlier consumer generation that a batch left to the "
                "partition's current owner (read again from the committed offset)")


async def ready_batches(stream: StreamT[Any], max_events: int,
                        within: float | None = WITHIN_S, *,
                        agent: str = "") -> AsyncIterator[list[EventT]]:
    """Yield lists of up to ``max_events`` events of ``stream``, at least every ``within`` s
    (only events of the consumer's current generation, see :func:`current_events`, and each
    message once, see :func:`distinct_messages`). ``within=None``: no linger, a batch is what
    arrived while the last one was handled (runtime/streams.take_ready), for agents on an
    order's path). Each batch is counted under ``agent`` (``shop_batch_*``)."""
    app = stream.app
    taken, events_taken = BATCHES.labels(agent or "?"), BATCH_EVENTS.labels(agent or "?")
    batches = (take_ready(stream, max_events) if within is None
               else cast(Any, stream).take_events(max_events, within=within))
    async for events in batches:
        current = distinct_messages(current_events(events, app.consumer_generation_id))
        taken.inc()
        events_taken.inc(len(events))
        if current:
            yield current


def distinct_messages(events: Sequence[EventT]) -> list[EventT]:
    """Return ``events`` without a second copy of a message (same topic, partition, offset).

    A batch can hold a message twice: the consumer reads a partition again from its committed
    offset after a rebalance (runtime/consumer.py) while copies read before are still in the
    stream's buffer. The replay guard skips a copy when each event is its own update of a row,
    but not when a batch folds a message's events into one update (a pack's events of one
    session) or counts what has no id of its own (an order's lines in the windows). The copy
    is still acknowledged with the batch, as the first one is.
    """
    seen: set[tuple[str, int, int]] = set()
    distinct = []
    for event in events:
        message = event.message
        where = (message.topic, message.partition, message.offset)
        if where not in seen:
            seen.add(where)
            distinct.append(event)
    if len(distinct) < len(events):
        COPIES.inc(len(events) - len(distinct))
    return distinct


def current_events(events: Sequence[EventT], generation: int) -> list[EventT]:
    """Return the events fetched in consumer ``generation``; mark the others done, unacked.

    An event of an earlier generation is left to its partition's current owner, which reads
    it again from the committed offset; ``acked`` is set on its message so that Faust's
    acknowledgement of the batch skips it and no commit of this worker goes past it.
    """
    current: list[EventT] = []
    for event in events:
        message = event.message
        if message.generation_id is None or message.generation_id == generation:
            current.append(event)
        else:
            message.acked = True
    if len(current) < len(events):
        STALE.inc(len(events) - len(current))
        log.warning("a batch left %d events of an earlier consumer generation to their "
                    "partitions' current owners (generation %s now)",
                    len(events) - len(current), generation)
    return current


@dataclass(frozen=True, slots=True)
class Decoded(Generic[E]):
    """An event of a batch, decoded: the record, where it came from, and its Faust event."""

    record: E
    position: Position
    event: EventT


async def decode_batch(events: Sequence[EventT], model: type[E] | EventTypes, *,
                       agent: str) -> list[Decoded[E]]:
    """Decode ``events`` into ``model``; dead-letter those that do not decode."""
    decoded: list[Decoded[E]] = []
    for event in events:
        message = event.message
        try:
            record: E = decode_event(model, message.value)
        except Exception as exc:
            await dead_letter(event, exc, agent=agent, stage="decode")
            continue
        decoded.append(Decoded(record, Position(message.topic, message.offset,
                                                record.event_id), event))
    return decoded


@contextmanager
def in_partition_of(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event for a block: table writes go to its partition.

    Faust's RocksDB store writes a row to the partition of the *current event*, which a
    batch does not have; a batch's rows of one partition are written in the context of its
    last event of that partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


Update = Callable[[Row | None], Row]


class WriteBack(MutableMapping[str, Row]):
    """A table's rows as a batch changes them: read through, written to the table once a row.

    A function that handles one event at a time against a table (the replay guard's
    ``decide_once`` included) runs unchanged over a batch against this; :meth:`write` then
    writes each changed row once, in the order of their last change, and deletes after every
    write (a row is written before, and deleted after, the rows that name it: a sku's
    archive rows). Reads within the batch see its own writes. Call it inside the partition's
    event context (:func:`in_partition_of`), as the reads too.
    """

    def __init__(self, table: MutableMapping[str, Row]) -> None:
        self._table = table
        self._changed: dict[str, Row | None] = {}  # key -> row, None: deleted; last change last
        #: The table's name (the replay guard's counters name the table).
        self.name: str = getattr(table, "name", "?")

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._changed:
            row = self._changed[key]
            return default if row is None else row
        return self._table.get(key, default)

    def __getitem__(self, key: str) -> Row:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return cast(Row, row)

    def __contains__(self, key: object) -> bool:
        return self.get(cast(str, key)) is not None

    def __setitem__(self, key: str, row: Row) -> None:
        self._changed.pop(key, None)
        self._changed[key] = row

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._changed.pop(key, None)
        self._changed[key] = None

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a batch's rows are read by key, not iterated")

    def __len__(self) -> int:
        raise TypeError("a batch's rows are read by key, not counted")

    @property
    def writes(self) -> int:
        """How many writes :meth:`write` makes (rows written or deleted)."""
        return len(self._changed)

    def write(self) -> None:
        """Write the changed rows to the table, then delete the deleted ones."""
        changed, self._changed = self._changed, {}
        for key, row in changed.items():
            if row is not None:
                self._table[key] = row
        for key, row in changed.items():
            if row is None:
                self._table.pop(key, None)


def fold_into(table: MutableMapping[str, Row], batch: Sequence[Decoded[E]],
              key_of: Callable[[E], str],
              update_of: Callable[[E], Update]) -> list[tuple[EventT, Exception]]:
    """Apply each event's update to its row, one write a row a batch; return what failed.

    A partition's rows are written in its event context; the replay guard (update_many)
    skips what a row has absorbed, so a redelivered batch changes nothing.
    """
    by_partition: dict[int, list[Decoded[E]]] = defaultdict(list)
    for item in batch:
        by_partition[item.event.message.partition].append(item)
    failed: list[tuple[EventT, Exception]] = []
    for items in by_partition.values():
        by_key: dict[str, list[Decoded[E]]] = defaultdict(list)
        for item in items:
            by_key[key_of(item.record)].append(item)
        with in_partition_of(items[-1].event):
            for key, mine in by_key.items():
                updates = [(item.position, update_of(item.record)) for item in mine]
                failed.extend((mine[index].event, exc)
                              for index, exc in update_many(table, key, updates))
    return failed


Failures = list[tuple[EventT, Exception]]


async def handle_batches(stream: StreamT[Any], model: type[E] | EventTypes,
                         handle: Callable[[list[Decoded[E]]], Failures], *, agent: str,
                         max_events: int = 2_000, within: float | None = WITHIN_S) -> None:
    """Consume ``stream`` in batches: decode, then ``handle`` each partition's events in that
    partition's event context; dead-letter what does not decode or what ``handle`` says
    failed."""
    async for events in ready_batches(stream, max_events, within=within, agent=agent):
        batch: list[Decoded[E]] = await decode_batch(events, model, agent=agent)
        by_partition: dict[int, list[Decoded[E]]] = defaultdict(list)
        for item in batch:
            by_partition[item.event.message.partition].append(item)
        failed: Failures = []
        for items in by_partition.values():
            with in_partition_of(items[-1].event):
                failed.extend(handle(items))
        for event, exc in failed:
            await dead_letter(event, exc, agent=agent, stage="handle")
        note_applied(events, agent)


def note_applied(events: Sequence[EventT], agent: str) -> None:
    """The batch of ``events`` is handled: where ``agent`` is its topic's applier
    (runtime/positions.py), each partition's last offset in it counts as applied."""
    if agent not in APPLIERS.values():
        return
    last: dict[tuple[str, int], int] = {}
    for event in events:
        message = event.message
        if APPLIERS.get(message.topic) == agent:
            where = (message.topic, message.partition)
            last[where] = max(last.get(where, -1), message.offset)
    for (topic, partition), offset in last.items():
        positions.handled(topic, partition, offset)


async def fold_batches(stream: StreamT[Any], model: type[E], table: MutableMapping[str, Row],
                       key_of: Callable[[E], str], update_of: Callable[[E], Update], *,
                       agent: str, max_events: int = 2_000,
                       within: float | None = WITHIN_S) -> None:
    """Consume ``stream`` in batches into ``table`` (see :func:`fold_into`); dead-letter
    what does not decode or update."""
    await handle_batches(stream, model, lambda batch: fold_into(table, batch, key_of, update_of),
                         agent=agent, max_events=max_events, within=within)
