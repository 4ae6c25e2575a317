"""Kafka as at-least-once delivery makes it, in memory, for state-machine tests of the agents.

A topic is partitioned by key; each partition keeps its order. A consumer group (an agent)
reads each partition from its position and commits positions; everything it produces (its
messages and its table's changelog writes) waits in its producer's buffer until a flush, and
a commit flushes first, as Faust does. A crash loses the buffer and sends the agent back to
its last committed positions; its table is either the local store it had (the same worker
restarted) or what the changelog holds (another worker took its partitions over). A producer
retry appends a message a second time.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tables.replay import Position, Row, Send

__all__ = ["Agent", "Kafka", "Message", "StoredTable"]

#: Partitions of every topic (keys spread as a hash of their bytes, as a producer does).
PARTITIONS = 2


@dataclass(frozen=True)
class Message:
    """One record of a partition's log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: str


class Kafka:
    """Topics of PARTITIONS partitions each, appended to and read by offset."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.logs: dict[tuple[str, int], list[Message]] = {
            (topic, p): [] for topic in topics for p in range(PARTITIONS)}

    def append(self, topic: str, key: str, value: str) -> Message:
        """Append ``value`` under ``key`` to its partition of ``topic``."""
        partition = zlib.crc32(key.encode()) % PARTITIONS
        log = self.logs[(topic, partition)]
        message = Message(topic, partition, len(log), key, value)
        log.append(message)
        return message

    def append_again(self, message: Message) -> None:
        """Append ``message`` once more at the end of its partition (a producer retry)."""
        log = self.logs[(message.topic, message.partition)]
        log.append(Message(message.topic, message.partition, len(log), message.key,
                           message.value))


class StoredTable(dict[str, Row]):
    """A table as its worker's local store has it, and what its changelog holds.

    A write reaches the local store at once and the changelog at the producer's next flush;
    a crash loses the writes not flushed from the changelog (the local store keeps them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.changelog: dict[str, str] = {}
        self.unflushed: set[str] = set()

    def __setitem__(self, key: str, row: Row) -> None:
        super().__setitem__(key, json.loads(json.dumps(row)))  # stored as JSON, as the store
        self.unflushed.add(key)

    def pop(self, key: str, *default: Row | None) -> Row | None:  # type: ignore[override]
        if key in self:
            self.unflushed.add(key)  # a deletion, flushed as one
        return super().pop(key, *default)

    def flush(self) -> None:
        """The changelog writes left the producer."""
        for key in self.unflushed:
            if key in self:
                self.changelog[key] = json.dumps(self[key])
            else:
                self.changelog.pop(key, None)
        self.unflushed.clear()

    def lose_unflushed(self, *, taken_over: bool) -> None:
        """A crash: the changelog never gets the writes in the buffer; a worker that takes
        the partitions over has only what the changelog holds."""
        self.unflushed.clear()
        if taken_over:
            self.clear()
            self.update({key: json.loads(raw) for key, raw in self.changelog.items()})


Handle = Callable[[Message, Position], list[Send]]


@dataclass
class Agent:
    """A consumer group with its table(s), positions, committed offsets and producer buffer."""

    name: str
    topics: tuple[str, ...]
    handle: Handle
    kafka: Kafka
    table: StoredTable = field(default_factory=StoredTable)
    position: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    buffer: list[Send] = field(default_factory=list)
    #: Tables the agent writes besides ``table`` (flushed and lost with it).
    more_tables: tuple[StoredTable, ...] = ()

    def ready(self) -> list[tuple[str, int]]:
        """Return the partitions with a message to read next."""
        return [tp for tp, log in self.kafka.logs.items()
                if tp[0] in self.topics and self.position.get(tp, 0) < len(log)]

    def deliver(self, tp: tuple[str, int]) -> None:
        """Read and handle the next message of partition ``tp``."""
        offset = self.position.get(tp, 0)
        message = self.kafka.logs[tp][offset]
        self.position[tp] = offset + 1
        value = json.loads(message.value)
        self.buffer.extend(self.handle(message, Position(tp[0], offset, value["event_id"])))

    def produce(self, sends: Iterable[Send]) -> None:
        """Put messages in the producer's buffer (sent at the next flush)."""
        self.buffer.extend(sends)

    def flush(self, route: Callable[[Send], None]) -> None:
        """Send what the buffer holds, and the table's changelog writes."""
        sends, self.buffer = self.buffer, []
        for send in sends:
            route(send)
        for table in (self.table, *self.more_tables):
            table.flush()

    def commit(self, route: Callable[[Send], None]) -> None:
        """Flush, then commit every position (Faust commits only what was flushed)."""
        self.flush(route)
        self.committed = dict(self.position)

    def crash(self, *, taken_over: bool) -> None:
        """Lose the buffer and read again from the committed offsets."""
        self.buffer = []
        self.position = dict(self.committed)
        for table in (self.table, *self.more_tables):
            table.lose_unflushed(taken_over=taken_over)

