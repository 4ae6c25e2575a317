"""The orders topic's ``order_<status>`` notices, read once for every service that wants them.

Analytics (purchases in the windows), recommendations (a customer's purchases), reports (the
day's sales) and notifications (the customer's notice) all read the saga's notices. As four
agents on the orders topic, each paid Faust's per-event cost for *every* event of the topic
(placements, stock answers, sweeps) just to pass most of them over. One agent takes the
topic in batches (agents/batches.py), decodes each notice once and hands a partition's
notices to each reader registered with :func:`reads_order_notices`, in that partition's
event context (a reader's table writes go to the notices' partition), so a reader can fold
many notices into one row write.

A reader that fails on a notice does not stop the others: the notice is dead-lettered once,
naming the readers that failed, and each reader is duplicate-safe on its own, so a
redelivery is safe.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from faust.types import EventT, StreamT

from agents.batches import Decoded, decode_batch, in_partition_of, ready_batches
from agents.dead_letters import dead_letter, event_type_of, request_held
from agents.topics import orders_topic
from app import app
from models.orders import ORDER_EVENTS, RETIRED_ORDER_TYPES, OrderUpdate
from tables.replay import Position

__all__ = ["NOTICES", "NoticeReadersFailed", "apply_notices", "each_notice",
           "read_order_notices", "reads_order_notices"]

#: Every order_<status> notice type; the orders topic's other events are passed over.
NOTICES = frozenset(t for t, cls in ORDER_EVENTS.items() if cls is OrderUpdate)
NOT_NOTICES = frozenset({*(t for t in ORDER_EVENTS if t not in NOTICES), *RETIRED_ORDER_TYPES})

#: Notices a batch takes at most.
BATCH = 2_000
AGENT = "orders.notices"

Failures = list[tuple[EventT, Exception]]
#: A reader takes the notices of one partition (in its event context); returns what failed.
Reader = Callable[[Sequence[Decoded[OrderUpdate]]], Awaitable[Failures]]


@dataclass(frozen=True)
class NoticeReader:
    """A service that reads some notice types."""

    name: str
    types: frozenset[str]
    read: Reader


_readers: list[NoticeReader] = []


class NoticeReadersFailed(RuntimeError):
    """One or more readers of a notice failed (the message names them and their errors)."""


def reads_order_notices(name: str, types: Collection[str] = NOTICES) -> Callable[[Reader], Reader]:
    """Register the decorated coroutine as the reader ``name`` of the notices ``types``."""
    unknown = set(types) - NOTICES
    if unknown:
        raise ValueError(f"not order notices: {', '.join(sorted(unknown))}")

    def register(read: Reader) -> Reader:
        _readers.append(NoticeReader(name, frozenset(types), read))
        return read

    return register


async def each_notice(notices: Sequence[Decoded[OrderUpdate]],
                      read: Callable[[OrderUpdate, Position], Awaitable[None]], *,
                      reader: str = AGENT) -> Failures:
    """Await ``read`` for every notice; return those that failed (for per-notice readers).

    A notice a request caused is read with that request's id held (what ``read`` sends
    carries it on), as ``for_each_event`` does for a single event.
    """
    failed: Failures = []
    for notice in notices:
        try:
            with request_held(notice.event, notice.record, reader):
                await read(notice.record, notice.position)
        except Exception as exc:
            failed.append((notice.event, exc))
    return failed


async def apply_notices(batch: Sequence[Decoded[OrderUpdate]]) -> dict[EventT, list[str]]:
    """Hand a batch's notices, a partition at a time, to their readers; return what failed."""
    by_partition: dict[int, list[Decoded[OrderUpdate]]] = defaultdict(list)
    for notice in batch:
        by_partition[notice.event.message.partition].append(notice)
    failures: dict[EventT, list[str]] = defaultdict(list)
    for notices in by_partition.values():
        with in_partition_of(notices[-1].event):
            for reader in _readers:
                mine = [n for n in notices if n.record.type in reader.types]
                if not mine:
                    continue
                try:
                    failed = await reader.read(mine)
                except Exception as exc:
                    failed = [(n.event, exc) for n in mine]
                for event, error in failed:
                    failures[event].append(f"{reader.name}: {type(error).__name__}: {error}")
    return failures


@app.agent(orders_topic, name=AGENT)
async def read_order_notices(stream: StreamT[bytes]) -> None:
    """Consume the orders topic's notices, in batches, for every service that reads them."""
    async for events in ready_batches(stream, BATCH, agent=AGENT):
        wanted = [e for e in events if event_type_of(e.message.value) not in NOT_NOTICES]
        batch: list[Decoded[OrderUpdate]] = await decode_batch(
            wanted, dict.fromkeys(NOTICES, OrderUpdate), agent=AGENT)
        for event, reasons in (await apply_notices(batch)).items():
            await dead_letter(event, NoticeReadersFailed("; ".join(reasons)), agent=AGENT,
                              stage="handle")
