"""The orders topic's ``order_<status>`` notices, read once for every service that wants them.

Analytics (purchases in the windows), recommendations (a customer's purchases), reports (the
day's sales) and notifications (the customer's notice) all read the saga's notices. As four
agents on the orders topic, each paid Faust's per-event cost for *every* event of the topic
(placements, stock answers, sweeps) just to pass most of them over; one agent decodes each
notice once and hands it to the readers registered with :func:`reads_order_notices`, in the
notice's event context (a reader's table writes go to the notice's partition).

A reader that fails does not stop the others: the notice is dead-lettered once, naming the
readers that failed, and each reader is duplicate-safe on its own, so a redelivery is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.topics import orders_topic
from app import app
from models.orders import ORDER_EVENTS, OrderUpdate
from tables.replay import Position

__all__ = ["NOTICES", "NoticeReadersFailed", "apply_notice", "read_order_notices",
           "reads_order_notices"]

#: Every order_<status> notice type; the orders topic's other events are passed over.
NOTICES = frozenset(t for t, cls in ORDER_EVENTS.items() if cls is OrderUpdate)
NOT_NOTICES = frozenset(t for t in ORDER_EVENTS if t not in NOTICES)

Reader = Callable[[OrderUpdate, Position], Awaitable[None]]


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


async def apply_notice(notice: OrderUpdate, position: Position) -> None:
    """Hand ``notice`` to every reader of its type; raise naming those that failed."""
    failures = []
    for reader in _readers:
        if notice.type in reader.types:
            try:
                await reader.read(notice, position)
            except Exception as exc:
                failures.append(f"{reader.name}: {type(exc).__name__}: {exc}")
    if failures:
        raise NoticeReadersFailed("; ".join(failures))


@app.agent(orders_topic, name="orders.notices")
async def read_order_notices(stream: StreamT[bytes]) -> None:
    """Consume the orders topic's notices for analytics, recommendations, reports and mail."""
    await for_each_event(stream, dict.fromkeys(NOTICES, OrderUpdate), apply_notice,
                         agent="orders.notices", skip=NOT_NOTICES)
