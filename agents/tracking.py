"""The tracking collector: tracked events of many requests packed into one message a partition.

``POST /api/events`` hands its session's events to :data:`collector`, which gathers the events
of every request for ``LINGER_S`` per partition of the analytics topic (or until a pack holds
``PACK_EVENTS``) and sends them as one ``tracked_batch`` message (models/analytics.py
``pack_tracked``) to that partition; each request returns once its events are on the broker.

Why: Faust costs ~80 us of CPU per *message* an agent reads on this machine, before the agent
does anything, which caps an agent at ~12,000 messages/s whatever it does; a message that
carries the events of many requests pays it once for all of them, so analytics.tracked does the
work of the events themselves (sessions, windows, forwards), not Faust's per-message rounds. The
cost is up to ``LINGER_S`` more before a tracking request returns.

A pack holds the events of sessions of one partition (:func:`partition_of`, aiokafka's default
partitioner) and is keyed by its first event's session, so every session's events stay in one
partition, in order, and ``session_activity`` rows live where table routing looks for them.
Each event keeps its own id; the pack has an id too, which the replay guard uses for the
pack's updates of a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2
from faust.types import TopicT
from prometheus_client import Counter

from agents.topics import analytics_topic, ensure_declared
from models.analytics import MAX_PACKED, pack_tracked
from models.base import new_event_id, utcnow
from models.tracing import REQUEST_ID

__all__ = ["LINGER_S", "PACK_EVENTS", "TrackingCollector", "collector", "pack_by_partition",
           "partition_of"]

#: How long a partition's pack waits for more requests' events (s).
LINGER_S = 0.02
#: A pack is sent as soon as it holds this many events.
PACK_EVENTS = 1_000

assert PACK_EVENTS <= MAX_PACKED

log = logging.getLogger(__name__)
PACKS = Counter("shop_tracking_packs_total", "Packs of tracked events the collector sent")
PACKED = Counter("shop_tracking_packed_events_total",
                 "Tracked events the collector sent in packs (over packs: the mean pack)")


def partition_of(key: str, partitions: int) -> int:
    """Return the partition aiokafka's default partitioner picks for the UTF-8 ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def pack_by_partition(events: Iterable[tuple[str, bytes]], partitions: int,
                      size: int) -> list[tuple[str, list[bytes]]]:
    """Return ``(session, event JSON)`` pairs as packs of up to ``size`` events a partition.

    Each pack is ``(key, events)``: its key is its first event's session, which routes it to
    the partition every session of the pack shares. Packs of a partition keep the events'
    order; a pack is full before the next begins.
    """
    open_packs: dict[int, list[bytes]] = {}
    packs: list[tuple[str, list[bytes]]] = []
    for session_id, event in events:
        partition = partition_of(session_id, partitions)
        pack = open_packs.get(partition)
        if pack is None or len(pack) >= size:
            pack = open_packs[partition] = []
            packs.append((session_id, pack))
        pack.append(event)
    return packs


@dataclass
class _Pack:
    """A partition's pack being gathered: its key, events, the requests waiting, its timer."""

    key: str
    events: list[bytes] = field(default_factory=list)
    waiting: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class TrackingCollector:
    """Gathers requests' tracked events per partition; sends each partition's pack as one."""

    def __init__(self, topic: TopicT, *, linger_s: float = LINGER_S,
                 pack_events: int = PACK_EVENTS) -> None:
        self.topic = topic
        self.linger_s = linger_s
        self.pack_events = pack_events
        self._packs: dict[int, _Pack] = {}
        self._sending: set[asyncio.Future[None]] = set()

    async def send(self, session_id: str, events: Sequence[bytes]) -> None:
        """Send one session's events (Tracked JSON); return once they are on the broker."""
        loop = asyncio.get_running_loop()
        partition = partition_of(session_id, self._partitions())
        pack = self._packs.setdefault(partition, _Pack(session_id))
        done: asyncio.Future[None] = loop.create_future()
        pack.events.extend(events)
        pack.waiting.append(done)
        if len(pack.events) >= self.pack_events:
            self._flush(partition)
        elif pack.timer is None:
            pack.timer = loop.call_later(self.linger_s, self._flush, partition)
        await done

    def _partitions(self) -> int:
        partitions = self.topic.partitions
        if not partitions:
            raise RuntimeError(f"topic {self.topic.get_topic_name()!r} has no partition count")
        return partitions

    def _flush(self, partition: int) -> None:
        pack = self._packs.pop(partition, None)
        if pack is None:
            return
        if pack.timer is not None:
            pack.timer.cancel()
        sending = asyncio.ensure_future(self._send_pack(pack))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send_pack(self, pack: _Pack) -> None:
        # A pack holds the events of many requests: it is sent as none of them (this task
        # inherited the context of the request that filled the pack).
        REQUEST_ID.set("")
        events = pack.events
        try:
            await ensure_declared(self.topic)  # a request may come before Faust creates it
            sent = []
            for start in range(0, len(events), MAX_PACKED):
                value = pack_tracked(new_event_id(), events[start:start + MAX_PACKED],
                                     occurred_at=utcnow().isoformat())
                sent.append(await self.topic.send(key=pack.key, value=value))
            await asyncio.gather(*sent)
            PACKS.inc(len(sent))
            PACKED.inc(len(events))
        except Exception as exc:
            log.warning("tracking: a pack of %d events (key %s) was not sent: %s",
                        len(events), pack.key, exc)
            for done in pack.waiting:
                if not done.done():
                    done.set_exception(exc)
            return
        for done in pack.waiting:
            if not done.done():
                done.set_result(None)


#: The collector of this worker's tracking requests.
collector = TrackingCollector(analytics_topic)
