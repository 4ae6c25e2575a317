"""agents/batches.py: batches of what a stream has ready, acknowledged after they are handled."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.batches import ready_batches


class Queue:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def empty(self) -> bool:
        return not self.items


class Stream:
    """A stream whose channel queue holds ``ready`` events, and a log of acks."""

    def __init__(self, ready: list[str], later: list[str]) -> None:
        self.channel = type("Channel", (), {})()
        self.channel.queue = Queue(list(ready))
        self.later = later
        self.acked: list[str] = []

    def noack(self) -> Stream:
        return self

    async def events(self) -> Any:
        while self.channel.queue.items:
            yield self.channel.queue.items.pop(0)
        for event in self.later:
            await asyncio.sleep(0.05)  # arrives after the batch was given out
            yield event

    async def ack(self, event: str) -> bool:
        self.acked.append(event)
        return True


async def test_ready_events_come_in_one_batch_acked_once_the_next_is_asked_for() -> None:
    stream = Stream(["a", "b", "c", "d"], later=["e"])
    batches = ready_batches(stream, max_events=10)  # type: ignore[arg-type]
    first = await anext(batches)
    assert first == ["a", "b", "c", "d"]
    assert stream.acked == [], "not acknowledged while the agent handles them"
    assert await anext(batches) == ["e"]
    assert stream.acked == ["a", "b", "c", "d"]


async def test_a_batch_holds_at_most_max_events() -> None:
    stream = Stream([str(n) for n in range(7)], later=[])
    sizes = [len(batch) async for batch in ready_batches(stream, max_events=3)]  # type: ignore[arg-type]
    assert sizes == [3, 3, 1]
    assert stream.acked == [str(n) for n in range(7)]
