"""Applied positions: how far this worker's tables have applied each topic partition.

A write through a topic is visible once the agent that owns the table it changes has handled
the write's event. Kafka Streams calls the answer a *position* (IQv2 ``Position``): per topic
partition, the highest offset whose event the store has applied. Here :data:`positions`
keeps, per (topic, partition) this worker owns, the highest offset whose event the topic's
*applier* (the agent that writes the table the API reads, :data:`APPLIERS`) has finished
handling, its table writes included, and lets a request wait, bounded, until a partition has
applied at least an offset.

Where the positions come from:

- ``agents.dead_letters.for_each_event`` notes every event the applier is done with: handled,
  passed over (another agent's event on a shared topic) or dead-lettered;
- a partition this worker takes over starts at its committed offset less one (every event
  before a committed offset was handled and its changelog writes flushed, and the restored
  table holds them: ``runtime/consumer.py`` calls :meth:`AppliedPositions.taken_over`);
- the topics of global tables (:data:`GLOBAL_TOPICS`: one partition, one agent, every worker
  keeps the whole table from its changelog) advance on every worker as their changelog
  records are applied, by the source offset each row records (``runtime/tables.py``). A wait on
  them is local: every worker applies them.

A partition this worker gives up ends its waits at once as *moved* (its new owner answers).

What an applied event *causes* one hop later can be part of the write too: a claim decided
registers the user's row, a restock moves the catalog's stock level, a placed order joins its
customer's list. :data:`FOLLOWS` names, per topic, the topics whose messages its applier sends
that count; ``agents.dead_letters.for_each_event`` collects those sends while the applier
handles an event (:func:`causes_of`, :func:`sending`) and hands them to
:meth:`AppliedPositions.handled`, which remembers where they landed (bounded, newest kept:
:data:`MAX_CAUSES`) next to the applied offset. :meth:`AppliedPositions.caused` answers them,
so a write waits for the chain (web/positions.py). What a worker did not apply itself (a
partition taken over, an event forgotten) has no known causes.

A partition this worker takes over is *caught up* once its applier has applied every event the
partition held when it came (its end offset then): before that, a row missing from its table
may be one whose events are still to be read again (a killed owner's uncommitted work), so a
"not found" is not an answer yet (web/views.NotRestored).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

__all__ = ["APPLIERS", "FOLLOWS", "GLOBAL_TOPICS", "MAX_CAUSES", "AppliedPositions", "Landed",
           "Outcome", "causes_of", "positions", "sending"]

#: topic -> the agent whose handling of an event makes it visible to the API (the writer of
#: the table the API reads). Other agents on the same topic do not count.
APPLIERS: dict[str, str] = {
    "orders": "orders.saga",
    "payments": "orders.saga",
    "inventory": "inventory.stock",
    "catalog": "catalog.products",
    "promotions": "promotions.codes",
    "users": "users.profiles",
    "user-emails": "users.emails",
    "revocations": "users.revocations",
    "support": "support.tickets",
    "notifications": "notifications.inbox",
    "recommendations": "recommendations.users",
    "user-orders": "orders.by-user",
}

#: topic -> the topics whose messages its applier sends while handling an event are part of
#: that event's visibility: a write waits for them to be applied too (one hop further), and a
#: token naming the event covers them. The saga's next steps (inventory, payments,
#: promotions) and the notifications are not: they are the shop acting later.
FOLLOWS: dict[str, frozenset[str]] = {
    "user-emails": frozenset({"users"}),  # a claim decided: the new user's row
    "users": frozenset({"user-emails"}),  # a password changed, a user deactivated: the login
    "inventory": frozenset({"catalog"}),  # a stock change: the catalog's stock level
    "orders": frozenset({"user-orders"}),  # an order placed: its customer's list of orders
}

#: The most applied events whose causes a worker remembers (the oldest are forgotten first):
#: a write waits for its causes within seconds, and a token comes back soon after.
MAX_CAUSES = 8192

#: Topics that feed a global table: one partition, applied by every worker.
GLOBAL_TOPICS = frozenset({"catalog", "promotions", "revocations"})

#: How a wait ended: the offset is applied here, the time ran out, or this worker does not
#: own the partition (any more).
Outcome = Literal["applied", "timeout", "moved"]

TopicPartition = tuple[str, int]
#: Where a message landed: (topic, partition, offset).
Landed = tuple[str, int, int]
#: An applied event's causes: where they landed, or a future of it while they are being sent
#: (its result None: a send failed, what the event caused is unknown).
_Causes = tuple[Landed, ...] | asyncio.Future[tuple[Landed, ...] | None]

#: The sends to followed topics of the event an applier is handling (see :func:`causes_of`).
_COLLECTING: ContextVar[tuple[frozenset[str], list[Any]] | None] = ContextVar(
    "shop_causes", default=None)


@contextmanager
def causes_of(topic: str | None) -> Iterator[list[Any]]:
    """Collect, while the block handles an event of ``topic`` (None: not as its applier), the
    sends (futures of their ``RecordMetadata``) to the topics ``topic`` follows."""
    sent: list[Any] = []
    follows = FOLLOWS.get(topic) if topic else None
    if not follows:
        yield sent
        return
    token = _COLLECTING.set((follows, sent))
    try:
        yield sent
    finally:
        _COLLECTING.reset(token)


def sending(topic: str, future: Any) -> None:
    """A message to ``topic`` was handed to the producer (``future``: its RecordMetadata):
    part of what the event being applied caused if its topic follows ``topic``."""
    collecting = _COLLECTING.get()
    if collecting is not None and topic in collecting[0]:
        collecting[1].append(future)


def _landed(sent: Sequence[Any]) -> tuple[Landed, ...] | None:
    """Return where the done sends landed, or None if one of them failed."""
    if any(future.cancelled() or future.exception() is not None for future in sent):
        return None
    return tuple((md.topic, md.partition, md.offset) for md in (f.result() for f in sent))


class AppliedPositions:
    """The highest applied offset per (topic, partition) of one worker, and waits on them."""

    def __init__(self) -> None:
        self._applied: dict[TopicPartition, int] = {}
        self._owned: frozenset[TopicPartition] = frozenset()
        self._waiting: defaultdict[TopicPartition, list[tuple[int, asyncio.Future[bool]]]] = (
            defaultdict(list))
        #: Partitions taken over whose end offset is not known yet.
        self._ends_unknown: set[TopicPartition] = set()
        #: Partitions taken over, and the offset their applier must reach to be caught up.
        self._catching_up: dict[TopicPartition, int] = {}
        #: (topic, partition, offset) of an applied event -> where its followed sends landed.
        self._caused: dict[Landed, _Causes] = {}

    def applied(self, topic: str, partition: int) -> int | None:
        """Return the highest offset of ``topic[partition]`` applied here (None: none known)."""
        return self._applied.get((topic, partition))

    def snapshot(self) -> dict[str, int]:
        """Return every known position as ``{"topic:partition": offset}``."""
        return {f"{topic}:{partition}": offset
                for (topic, partition), offset in sorted(self._applied.items())}

    def owns(self, topic: str, partition: int) -> bool:
        """Return True if this worker applies ``topic[partition]`` (a global topic: always)."""
        return topic in GLOBAL_TOPICS or (topic, partition) in self._owned

    def handled(self, topic: str, partition: int, offset: int,
                caused: Sequence[Any] = ()) -> None:
        """The applier is done with the event at ``offset``, whose handling sent ``caused``
        (futures of their RecordMetadata, see :func:`causes_of`): wake who waits for it."""
        if caused:
            self._remember((topic, partition, offset), caused)
        tp = (topic, partition)
        if offset <= self._applied.get(tp, -1):
            return
        self._applied[tp] = offset
        if self._catching_up.get(tp, offset + 1) <= offset:
            del self._catching_up[tp]
        waiting = self._waiting.get(tp)
        if not waiting:
            return
        still = []
        for wanted, future in waiting:
            if wanted <= offset:
                if not future.done():
                    future.set_result(True)
            else:
                still.append((wanted, future))
        if still:
            self._waiting[tp] = still
        else:
            del self._waiting[tp]

    def _remember(self, where: Landed, sent: Sequence[Any]) -> None:
        self._caused.pop(where, None)  # an event handled again: its latest sends count
        landed = _landed(sent) if all(future.done() for future in sent) else None
        if landed is not None:
            self._caused[where] = landed
        else:  # being sent (or failed: a future that says so)
            known: asyncio.Future[tuple[Landed, ...] | None] = (
                asyncio.get_running_loop().create_future())
            self._caused[where] = known

            def one_landed(_: Any) -> None:
                if known.done() or not all(future.done() for future in sent):
                    return
                landed = _landed(sent)
                known.set_result(landed)
                if landed is not None and self._caused.get(where) is known:
                    self._caused[where] = landed

            for future in sent:
                future.add_done_callback(one_landed)
            one_landed(None)
        while len(self._caused) > MAX_CAUSES:
            del self._caused[next(iter(self._caused))]

    async def caused(self, topic: str, partition: int, offset: int,
                     seconds: float) -> tuple[Landed, ...] | None:
        """Return where the followed sends of the applied event at ``offset`` landed (none
        known: empty), waiting at most ``seconds`` for the producer; None if they did not
        land in time or a send failed."""
        causes = self._caused.get((topic, partition, offset), ())
        if isinstance(causes, tuple):
            return causes
        try:
            return await asyncio.wait_for(asyncio.shield(causes), max(seconds, 0.0))
        except TimeoutError:
            return None

    def taken_over(self, committed: Mapping[TopicPartition, int | None]) -> None:
        """Partitions were sought to their committed offsets (the next to read): every event
        before one is applied (handled by an owner, flushed, restored here)."""
        for (topic, partition), offset in committed.items():
            if offset:
                self.handled(topic, partition, offset - 1)

    def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """This worker now owns ``tps``: forget the positions of the partitions it gave up
        and end their waits (moved); the partitions it takes over are to catch up."""
        owned = frozenset(tps)
        self._ends_unknown = {tp for tp in self._ends_unknown if tp in owned} | {
            tp for tp in owned - self._owned
            if tp[0] in APPLIERS and tp[0] not in GLOBAL_TOPICS}
        self._catching_up = {tp: end for tp, end in self._catching_up.items() if tp in owned}
        for tp in [tp for tp in self._applied if tp not in owned and tp[0] not in GLOBAL_TOPICS]:
            del self._applied[tp]
        self._caused = {where: causes for where, causes in self._caused.items()
                        if where[:2] in owned or where[0] in GLOBAL_TOPICS}
        for tp in [tp for tp in self._waiting if tp not in owned and tp[0] not in GLOBAL_TOPICS]:
            for _, future in self._waiting.pop(tp):
                if not future.done():
                    future.set_result(False)
        self._owned = owned

    def ends_unknown(self) -> set[TopicPartition]:
        """Return the partitions taken over whose end offset :meth:`catch_up_to` awaits."""
        return set(self._ends_unknown)

    def catch_up_to(self, ends: Mapping[TopicPartition, int]) -> None:
        """The partitions taken over held ``ends`` (their next offsets) when they came."""
        for tp, end in ends.items():
            if tp not in self._ends_unknown:
                continue
            self._ends_unknown.discard(tp)
            if self._applied.get(tp, -1) < end - 1:
                self._catching_up[tp] = end - 1

    def caught_up(self) -> bool:
        """Return True once every partition taken over has applied what it held then."""
        return not self._ends_unknown and not self._catching_up

    async def wait(self, topic: str, partition: int, offset: int, seconds: float) -> Outcome:
        """Wait at most ``seconds`` until ``topic[partition]`` has applied ``offset`` here."""
        if not self.owns(topic, partition):
            return "moved"
        if self._applied.get((topic, partition), -1) >= offset:
            return "applied"
        if seconds <= 0:
            return "timeout"
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (offset, future)
        self._waiting[(topic, partition)].append(entry)
        try:
            return "applied" if await asyncio.wait_for(future, seconds) else "moved"
        except TimeoutError:
            return "timeout"
        finally:
            waiting = self._waiting.get((topic, partition))
            if waiting and entry in waiting:
                waiting.remove(entry)
                if not waiting:
                    del self._waiting[(topic, partition)]


#: This worker's positions.
positions = AppliedPositions()
