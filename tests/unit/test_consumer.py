"""The consumer commits an offset only once its event was handled (runtime/consumer.py).

It never hands a record over ahead of the next offset, never counts the acknowledgement of a
message of an earlier generation, and never commits past an unhandled committed offset.

A model of one partition: aiokafka's fetch position, batches fetched before a seek and
handed over after it, and Faust's seek to the committed offsets in its two halves (the
thread moves the position; later the read offset is set), in any order. Faust's drain loop
is modelled as it is (faust/transport/consumer.py, ``_drain_messages``): a record more than
one ahead of the read offset makes the offsets between a gap, acknowledged unhandled.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from runtime.consumer import (
    SEEK_BACK_LIMIT,
    ShopConsumer,
    committable_run,
    is_ahead,
    last_read,
)

PARTITION = TP("orders", 4)
LENGTH = 30  # records in the partition


@dataclass
class Partition:
    """The broker's log, aiokafka's position in it, and what Faust's drain loop did."""

    position: int = 0
    #: Fetched before a seek, handed over after it (the drain loop's next batch: nothing is
    #: fetched before it is handed over).
    held: list[int] = field(default_factory=list)
    committed: int = 0
    pending_read_offset: int | None = None  # the second half of a seek, still to come
    delivered: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)  # acknowledged without being handed over

    def fetch(self, count: int) -> list[int]:
        records = list(range(self.position, min(LENGTH, self.position + count)))
        self.position += len(records)
        return records


class Harness:
    """Drives a consumer's ``getmany`` as Faust's drain loop does, over a :class:`Partition`."""

    def __init__(self, consumer_type: type[Consumer]) -> None:
        self.log = Partition()
        #: the read offset a seek to the committed offset leaves (Faust: the committed one)
        self.read_offset_after_seek: Callable[[int], int | None] = (
            last_read if issubclass(consumer_type, ShopConsumer) else lambda c: c)
        consumer: Any = consumer_type.__new__(consumer_type)
        consumer._read_offset = {}
        consumer._sought_back = {}
        consumer._read_again = False
        consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        kafka = SimpleNamespace(seek=self._seek)
        consumer._thread = SimpleNamespace(call_thread=self._call_thread,
                                           _ensure_consumer=lambda: kafka)
        self.consumer = consumer
        self._batch: list[int] = []

    async def _call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)

    def _seek(self, tp: TP, offset: int) -> None:
        self.log.position = offset

    async def _base_getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        for offset in self._batch:
            yield PARTITION, SimpleNamespace(topic=PARTITION.topic, offset=offset)

    async def hand_over(self, offsets: list[int]) -> None:
        """Run ``offsets`` through the consumer's getmany into the modelled drain loop."""
        self._batch = offsets
        read_offset = self.consumer._read_offset
        async for tp, message in self.consumer.getmany(1.0):
            last = read_offset.get(tp)
            if last is None or message.offset >= last:
                if message.offset - (last or 0) > 1 and last:
                    self.log.gaps.extend(range(last + 1, message.offset))
                self.log.delivered.append(message.offset)
                read_offset[tp] = message.offset
        seen = set(self.log.delivered)  # committed: up to the first offset not handed over
        self.log.committed = next(n for n in range(LENGTH + 1) if n not in seen)

    async def step(self, action: tuple[str, int]) -> None:
        kind, amount = action
        log = self.log
        if kind in ("fetch", "fetch_and_hold") and log.held:
            kind = "hand_over_held"  # the drain loop hands a batch over before it fetches
        if kind == "fetch":
            await self.hand_over(log.fetch(amount))
        elif kind == "fetch_and_hold":
            log.held = log.fetch(amount)
        elif kind == "hand_over_held":
            held, log.held = log.held, []
            await self.hand_over(held)
        elif kind == "seek_in_thread":  # first half of Faust's seek to the committed offset
            self._seek(PARTITION, log.committed)
            log.pending_read_offset = log.committed
        elif kind == "seek_sets_read_offset" and log.pending_read_offset is not None:
            self.consumer._read_offset[PARTITION] = self.read_offset_after_seek(
                log.pending_read_offset)
            log.pending_read_offset = None

    async def run(self, actions: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
                  ) -> Partition:
        monkeypatch.setattr(Consumer, "getmany", self._base_getmany)
        for action in actions:
            await self.step(action)
        await self.step(("hand_over_held", 0))  # then hand over what is held, read to the end
        for _ in range(4 * LENGTH):
            if self.log.position >= LENGTH:
                break
            await self.step(("fetch", 5))
        return self.log


actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["fetch", "fetch_and_hold"]), st.integers(1, 6)),
        st.tuples(st.sampled_from(["hand_over_held", "seek_in_thread",
                                   "seek_sets_read_offset"]), st.just(0)),
    ),
    max_size=12,
).filter(lambda xs: sum(kind == "seek_in_thread" for kind, _ in xs) <= 1
         and sum(kind == "fetch_and_hold" for kind, _ in xs) <= 1)


@settings(max_examples=300, deadline=None)
@given(actions)
def test_every_offset_is_handed_over_and_none_is_taken_as_a_gap(
        steps: list[tuple[str, int]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        log = asyncio.run(Harness(ShopConsumer).run(steps, patch))
    assert log.gaps == []
    assert set(log.delivered) == set(range(LENGTH)), (steps, log)


def test_faust_alone_takes_records_still_waiting_as_handled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the consumer guards against: the seek's read offset lands after more records
    were handed over, and the next record makes a gap of offsets nobody has handled yet."""
    steps = [("fetch", 3), ("seek_in_thread", 0), ("fetch", 4),
             ("seek_sets_read_offset", 0), ("fetch", 2)]
    log = asyncio.run(Harness(Consumer).run(steps, monkeypatch))
    assert log.gaps  # acknowledged without Faust's loop having handled them in this run


def test_a_real_gap_is_let_through_after_a_few_seeks_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A compacted topic has real gaps: after SEEK_BACK_LIMIT seeks back the record passes."""
    harness = Harness(ShopConsumer)
    monkeypatch.setattr(Consumer, "getmany", harness._base_getmany)
    harness.consumer._read_offset[PARTITION] = 5

    async def offer_eight() -> list[int]:
        before = len(harness.log.delivered)
        await harness.hand_over([8])
        return harness.log.delivered[before:]

    for _ in range(SEEK_BACK_LIMIT):
        assert asyncio.run(offer_eight()) == []
        assert harness.log.position == 6  # sought back to the offset after the read offset
    assert asyncio.run(offer_eight()) == [8]
    assert harness.log.gaps == [6, 7]


@pytest.mark.parametrize(("offset", "read_offset", "ahead"), [
    (5, None, False), (5, 4, False), (5, 5, False), (5, 3, True), (0, 0, False), (2, 0, True),
])
def test_ahead_means_offsets_would_be_left_unread(offset: int, read_offset: int | None,
                                                   ahead: bool) -> None:
    assert is_ahead(offset, read_offset) is ahead


def test_a_record_right_after_an_unread_committed_offset_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's seek leaves the read offset at the committed offset, the *next* to read, so a
    record one after it passes unnoticed with the committed offset never handed over (its
    first copy was dropped with the buffers). The consumer's seek leaves it one before."""
    for consumer_type, handed_over in ((Consumer, [8]), (ShopConsumer, [])):
        harness = Harness(consumer_type)
        monkeypatch.setattr(Consumer, "getmany", harness._base_getmany)
        harness.consumer._read_offset[PARTITION] = harness.read_offset_after_seek(7)
        asyncio.run(harness.hand_over([8]))
        assert harness.log.delivered == handed_over, consumer_type
    assert harness.log.position == 7  # read again from the committed offset


# --- committing ------------------------------------------------------------------------------

GENERATION = 5


def bare_consumer(committed: int | None = None) -> Any:
    """A ShopConsumer with only the state its acknowledgement and commit bookkeeping use."""
    consumer: Any = ShopConsumer.__new__(ShopConsumer)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._committed_offset[PARTITION] = committed
    consumer._withheld_at = {}
    consumer._stale_logged = None
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True),
                                   consumer_generation_id=GENERATION, in_recovery=False)
    return consumer


@dataclass(eq=False)
class FakeMessage:
    """The fields of a Faust message the acknowledgement reads and sets."""

    offset: int
    generation_id: int = GENERATION
    tp: TP = PARTITION
    topic: str = PARTITION.topic
    partition: int = PARTITION.partition
    acked: bool = False


def message(offset: int, generation: int = GENERATION) -> Any:
    return FakeMessage(offset, generation)


def faust_new_offset(acked: list[int], committed: int | None) -> int | None:
    """What Faust's own bookkeeping would commit."""
    consumer = bare_consumer(committed)
    consumer._acked[PARTITION] = list(acked)
    consumer._acked_index[PARTITION] = set(acked)
    return Consumer._new_offset(consumer, PARTITION)


@settings(max_examples=300, deadline=None)
@given(committed=st.integers(0, 50), handled=st.sets(st.integers(0, 40), max_size=30),
       gap=st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(1, 5))))
def test_a_commit_never_passes_an_offset_neither_handled_nor_a_gap(
        committed: int, handled: set[int], gap: tuple[int, int] | None) -> None:
    consumer = bare_consumer(committed)
    for offset in sorted(handled, reverse=True):  # acknowledged in any order
        consumer.ack(message(offset))
    done = {o for o in handled if o >= committed}
    if gap is not None:
        consumer._gap[PARTITION].addi(gap[0], gap[0] + gap[1])
        done |= set(range(max(gap[0], committed), gap[0] + gap[1]))
    new = consumer._new_offset(PARTITION)
    expected = committed
    while expected in done and expected <= max(handled, default=-1):
        expected += 1
    if new is None:
        assert committed not in handled, (committed, handled)
    else:
        assert set(range(committed, new)) <= done
        assert new >= expected  # the whole run that was handled


def test_faust_commits_past_an_unhandled_committed_offset_and_the_consumer_does_not() -> None:
    """faust-streaming issue #606: the event at the committed offset is still being handled
    (or its copy still waits in a buffer) while the next ones are done."""
    assert faust_new_offset([2586, 2587, 2588, 2589], 2585) == 2590  # 2585 lost
    assert faust_new_offset([1, 2], 0) == 3  # committed offset 0 is no offset to Faust
    for acked, committed in (([2586, 2587, 2588, 2589], 2585), ([1, 2], 0)):
        consumer = bare_consumer(committed)
        for offset in acked:
            consumer.ack(message(offset))
        assert consumer._new_offset(PARTITION) is None
        consumer.ack(message(committed))
        assert consumer._new_offset(PARTITION) == acked[-1] + 1


def test_an_acknowledgement_from_an_earlier_generation_is_not_counted() -> None:
    consumer = bare_consumer(committed=10)
    stale, current = message(11, GENERATION - 1), message(10)
    consumer._unacked_messages |= {stale, current}
    assert consumer.ack(stale) is False
    assert stale.acked and stale not in consumer._unacked_messages  # released
    assert consumer.ack(current) is True
    assert consumer._new_offset(PARTITION) == 11  # not 12: offset 11's copy is still to come


def test_a_gap_the_drain_loop_let_through_counts_from_the_committed_offset() -> None:
    """A real gap (records deleted) right at the committed offset is committed past; the
    record that revealed it is not taken as handled before it is."""
    consumer = bare_consumer(committed=4)
    asyncio.run(consumer._add_gap(PARTITION, 4, 7))  # read offset 3, record 7 handed over
    consumer.ack(message(8))
    assert consumer._new_offset(PARTITION) == 7  # past the gap, not past 7 (not handled yet)
    consumer._committed_offset[PARTITION] = 7  # as Faust's commit records it
    consumer.ack(message(7))
    assert consumer._new_offset(PARTITION) == 9


@pytest.mark.parametrize(("acked", "committed", "run"), [
    ([], 3, 0), ([4, 5], 3, 0), ([3, 4, 6], 3, 2), ([3], 3, 1), ([7, 8, 10], None, 2),
])
def test_the_committable_run_begins_at_the_committed_offset(
        acked: list[int], committed: int | None, run: int) -> None:
    assert committable_run(acked, committed) == run


@pytest.mark.parametrize(("committed", "read"), [(None, None), (0, None), (1, 0), (9, 8)])
def test_the_read_offset_after_a_seek_is_the_offset_before_the_committed_one(
        committed: int | None, read: int | None) -> None:
    assert last_read(committed) == read


# --- reading again after Faust empties the buffers -----------------------------------------

class FakeKafkaConsumer:
    """aiokafka's consumer as the re-read uses it: where each partition was sought."""

    def __init__(self) -> None:
        self.sought: dict[tuple[str, int], int | str] = {}

    def seek(self, tp: TP, offset: int) -> None:
        self.sought[(tp.topic, tp.partition)] = offset

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: 3 for tp in tps}  # the log's first offset (older ones were deleted)


def flowing_consumer(committed: dict[TP, int | None], sought_in: int | None) -> Any:
    """A ShopConsumer with the state the flow's resumption and the re-read use."""
    consumer = bare_consumer()
    consumer._committed_offset.update(committed)
    consumer._read_offset = {tp: 100 for tp in committed}  # read well past the commit
    consumer._sought_in = sought_in
    consumer._read_again = False
    consumer._sought, consumer._note_ends = {}, None  # what the positions learn (none here)
    kafka = FakeKafkaConsumer()

    async def call_thread(fun: Any, *args: Any) -> Any:
        return await fun(*args)

    consumer._thread = SimpleNamespace(call_thread=call_thread, _ensure_consumer=lambda: kafka)
    consumer.app.tables = SimpleNamespace(changelog_topics={"shopstream-orders-changelog"})
    consumer.app.conf = SimpleNamespace(consumer_auto_offset_reset="earliest")
    assigned = {*committed, TP("shopstream-orders-changelog", 0)}
    consumer.assignment = lambda: assigned
    consumer.can_resume_flow = asyncio.Event()
    consumer.suspend_flow = asyncio.Event()
    consumer.kafka = kafka
    return consumer


def test_a_flow_resumed_after_the_seek_reads_the_partitions_again_from_their_commits() -> None:
    """Faust empties every stream's buffer each time the flow resumes, after its seek:
    what was handed over meanwhile is gone unhandled while the read offsets are past it
    (780 orders of partitions never committed were lost that way in one crash-test run)."""
    never = TP("orders", 2)
    consumer = flowing_consumer({PARTITION: 7, never: None}, sought_in=GENERATION)
    consumer.resume_flow()
    assert consumer._read_again
    asyncio.run(consumer._read_again_from_committed())
    assert consumer.kafka.sought == {("orders", 4): 7, ("orders", 2): 3}
    assert consumer._read_offset == {PARTITION: 6, never: 2}
    assert consumer._committed_offset[never] == 3  # a commit of it starts at its first offset
    assert not consumer._read_again


def test_a_flow_resumed_before_this_generations_seek_reads_nothing_again() -> None:
    """Before the seek the committed offsets are not known yet (Faust's seek follows)."""
    consumer = flowing_consumer({PARTITION: None}, sought_in=GENERATION - 1)
    consumer.resume_flow()
    assert not consumer._read_again


def test_a_batch_fetched_before_the_flow_resumed_is_not_handed_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = flowing_consumer({PARTITION: 7}, sought_in=GENERATION)
    consumer._sought_back = {}

    async def batch(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        for offset in (101, 102, 103):
            if offset == 102:
                consumer.resume_flow()  # the rebalance ends while the batch is handed over
            yield PARTITION, SimpleNamespace(topic=PARTITION.topic, offset=offset)

    monkeypatch.setattr(Consumer, "getmany", batch)

    async def hand_over() -> list[int]:
        return [message.offset async for _, message in consumer.getmany(1.0)]

    assert asyncio.run(hand_over()) == [101]
    assert consumer.kafka.sought == {("orders", 4): 7}
    assert consumer._read_offset[PARTITION] == 6


CHANGELOG = TP("shopstream-orders-changelog", 0)


def test_a_flow_resumed_for_the_restore_reads_nothing_again() -> None:
    """The restore resumes the flow for the changelogs alone, the streams paused; a seek of
    this generation may come first (Faust seeks when a fetch returns while the flow is
    stopped), and the streams are read again once recovery is over, not before."""
    consumer = flowing_consumer({PARTITION: 7}, sought_in=GENERATION)
    consumer.app.in_recovery = True
    consumer.resume_flow()
    assert not consumer._read_again
    consumer.app.in_recovery = False
    consumer.resume_flow()
    assert consumer._read_again


def test_a_batch_read_again_still_hands_its_changelog_records_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the stream partitions are sought again; a changelog's records dropped from the
    batch would never come again (its position is past them), and a table restoring from it
    would wait for them for ever."""
    consumer = flowing_consumer({PARTITION: 7}, sought_in=GENERATION)
    consumer._sought_back = {}
    consumer._read_offset[CHANGELOG] = 100  # not moved here: the drain loop moves it
    consumer.app.topics.acks_enabled_for = lambda topic: topic != CHANGELOG.topic  # Faust's
    records = [(PARTITION, 101), (CHANGELOG, 101), (PARTITION, 102), (CHANGELOG, 102),
               (CHANGELOG, 103), (PARTITION, 103)]

    async def batch(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        for tp, offset in records:
            if (tp, offset) == (CHANGELOG, 101):
                consumer.resume_flow()  # the rebalance ends while the batch is handed over
            yield tp, SimpleNamespace(topic=tp.topic, offset=offset)

    monkeypatch.setattr(Consumer, "getmany", batch)

    async def hand_over() -> list[tuple[str, int]]:
        return [(tp.topic, message.offset) async for tp, message in consumer.getmany(1.0)]

    assert asyncio.run(hand_over()) == [
        ("orders", 101), (CHANGELOG.topic, 101), (CHANGELOG.topic, 102), (CHANGELOG.topic, 103)]
    assert consumer.kafka.sought == {("orders", 4): 7}  # the changelog is not sought
