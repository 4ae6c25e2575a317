"""Batches of what an agent's stream has ready, acknowledged once the batch is handled.

For agents whose events are many and cheap to fold together (tracked behaviour, sales
counts, item pairs): a batch is decoded event by event (what does not decode is
dead-lettered, as everywhere) and written once per row.

Faust's ``take_events`` buffers through a stream processor and a timer: every event costs
an extra await, and a batch waits up to ``within`` for more. :func:`ready_batches` takes
the events the stream has already received, up to ``max_events``, and yields them as soon as
the stream has no more waiting: a busy topic gives large batches, a quiet one a batch of
one at once. The stream's own acknowledgement is off; each batch's events are acknowledged
when the agent asks for the next batch, so an offset is committed only after the batch
that holds it was handled (at-least-once, as everywhere).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from faust.streams import _current_event
from faust.types import EventT, StreamT

from agents.dead_letters import dead_letter
from models.base import Event, EventTypes, decode_event
from tables.replay import Position, Row, update_many

E = TypeVar("E", bound=Event)

__all__ = ["FILL_S", "Decoded", "decode_batch", "fold_batches", "fold_into", "in_partition_of",
           "ready_batches"]

#: How long a batch waits for more when the stream has nothing more ready (s).
FILL_S = 0.01


async def ready_batches(stream: StreamT[Any], max_events: int) -> AsyncIterator[list[EventT]]:
    """Yield lists of up to ``max_events`` events that ``stream`` has ready."""
    manual = cast(Any, stream).noack()
    queue = getattr(stream.channel, "queue", None)
    batch: list[EventT] = []
    async for event in manual.events():
        batch.append(event)
        if len(batch) < max_events and queue is not None and queue.empty():
            await asyncio.sleep(FILL_S)  # the consumer hands messages over one by one
        if len(batch) >= max_events or queue is None or queue.empty():
            yield batch
            for handled in batch:
                await manual.ack(handled)
            batch = []


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


async def fold_batches(stream: StreamT[Any], model: type[E], table: MutableMapping[str, Row],
                       key_of: Callable[[E], str],
                       update_of: Callable[[E], Update], *,
                       agent: str, max_events: int = 2_000) -> None:
    """Consume ``stream`` in batches into ``table`` (see :func:`fold_into`); dead-letter
    what does not decode or update."""
    async for events in ready_batches(stream, max_events):
        batch = await decode_batch(events, model, agent=agent)
        for event, exc in fold_into(table, batch, key_of, update_of):
            await dead_letter(event, exc, agent=agent, stage="handle")
