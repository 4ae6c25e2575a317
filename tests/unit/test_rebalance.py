"""Giving partitions up: the wait for unacknowledged messages is bounded (runtime/rebalance)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest
from faust.types import TP
from prometheus_client import REGISTRY

from runtime.rebalance import GAVE_UP, count_assignment, wait_for_streams, wait_limit


@dataclass(eq=False)
class Message:
    topic: str
    partition: int
    offset: int
    refcount: int = 1
    acked: bool = False


@dataclass
class Consumer:
    """A consumer whose messages are acknowledged after ``acked_after`` s (None: never)."""

    acked_after: float | None
    unacked: set[Message] = field(default_factory=set)
    should_stop: bool = False
    commits: int = 0
    final_commits: int = 0

    def __post_init__(self) -> None:
        if self.acked_after is not None:
            asyncio.get_running_loop().call_later(self.acked_after, self.unacked.clear)

    async def commit(self) -> None:
        self.commits += 1

    async def commit_and_end_transactions(self) -> None:
        self.final_commits += 1


async def test_streams_that_finish_in_time_are_waited_for() -> None:
    consumer = Consumer(0.01, {Message("orders", 2, 407)})
    assert await wait_for_streams(consumer, within=1.0, poll=0.005)  # type: ignore[arg-type]
    assert consumer.final_commits == 1 and not consumer.unacked


async def test_a_message_never_acknowledged_does_not_hold_the_rebalance_for_ever(
        caplog: pytest.LogCaptureFixture) -> None:
    held = Message("orders", 2, 407)
    consumer = Consumer(None, {held, Message("orders", 2, 408)})
    before = GAVE_UP._value.get()
    with caplog.at_level(logging.WARNING, logger="runtime.rebalance"):
        assert not await wait_for_streams(consumer, within=0.05,  # type: ignore[arg-type]
                                          poll=0.005)
    assert consumer.commits >= 1 and consumer.final_commits == 1, (
        "what was acknowledged is committed before going on")
    assert len(consumer.unacked) == 2, "nothing is marked acknowledged that was not"
    assert GAVE_UP._value.get() == before + 1
    assert "2 messages" in caplog.text
    assert "orders[2]@407 refcount 1 held by" in caplog.text and "orders[2]@408" in caplog.text


async def test_a_message_acknowledged_after_its_commit_does_not_hold_the_rebalance() -> None:
    # Faust leaves a message acknowledged behind its committed offset in the unacknowledged
    # set; waiting for it kept every such rebalance waiting the whole deadline.
    late = Message("analytics", 6, 248, refcount=0, acked=True)
    consumer = Consumer(None, {late})
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await wait_for_streams(consumer, within=5.0, poll=0.005)  # type: ignore[arg-type]
    assert loop.time() - began < 1.0 and not consumer.unacked
    assert consumer.final_commits == 1


def test_the_wait_ends_well_inside_the_session_timeout() -> None:
    assert wait_limit(6.0) == 3.0  # the other half: commit and rejoin before being dropped
    assert wait_limit(60.0) == 10.0


def _sample(name: str, topic: str) -> float:
    return REGISTRY.get_sample_value(name, {"topic": topic}) or 0.0


def test_partitions_given_after_the_first_assignment_count_as_taken_over() -> None:
    topic = "assign-test"
    taken = _sample("shop_partitions_taken_over_total", topic)
    mine, theirs = {TP(topic, 0), TP(topic, 1)}, {TP(topic, 2), TP(topic, 3)}

    count_assignment(None, mine)  # joining the group: nothing taken over
    assert _sample("shop_partitions_assigned", topic) == 2
    assert _sample("shop_partitions_taken_over_total", topic) == taken

    count_assignment(mine, mine | theirs)  # the other member left
    assert _sample("shop_partitions_assigned", topic) == 4
    assert _sample("shop_partitions_taken_over_total", topic) == taken + 2

    count_assignment(mine | theirs, mine)  # it came back: given up, nothing taken
    assert _sample("shop_partitions_assigned", topic) == 2
    assert _sample("shop_partitions_taken_over_total", topic) == taken + 2

    count_assignment(mine, set())  # a topic no longer held reads 0
    assert _sample("shop_partitions_assigned", topic) == 0
