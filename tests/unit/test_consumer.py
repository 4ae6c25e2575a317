"""The consumer never hands a record over ahead of the next offset (agents/consumer.py).

A model of one partition: aiokafka's fetch position, batches fetched before a seek and
handed over after it, and Faust's seek to the committed offsets in its two halves (the
thread moves the position; later the read offset is set), in any order. Faust's drain loop
is modelled as it is (faust/transport/consumer.py, ``_drain_messages``): a record more than
one ahead of the read offset makes the offsets between a gap, acknowledged unhandled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.consumer import SEEK_BACK_LIMIT, ShopConsumer, is_ahead

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
        consumer: Any = consumer_type.__new__(consumer_type)
        consumer._read_offset = {}
        consumer._sought_back = {}
        consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        consumer._thread = SimpleNamespace(call_thread=self._call_thread,
                                           seek=self._seek)
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
            self.consumer._read_offset[PARTITION] = log.pending_read_offset
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
        assert harness.log.position == 5  # sought back to the read offset
    assert asyncio.run(offer_eight()) == [8]
    assert harness.log.gaps == [6, 7]


@pytest.mark.parametrize(("offset", "read_offset", "ahead"), [
    (5, None, False), (5, 4, False), (5, 5, False), (5, 3, True), (0, 0, False), (2, 0, True),
])
def test_ahead_means_offsets_would_be_left_unread(offset: int, read_offset: int | None,
                                                   ahead: bool) -> None:
    assert is_ahead(offset, read_offset) is ahead
