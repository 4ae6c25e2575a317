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


class FakeEvent:
    def __init__(self, partition: int, offset: int) -> None:
        self.message = type("Message", (), {"partition": partition, "offset": offset})()


def test_a_batch_is_folded_with_one_write_a_row() -> None:
    from agents.batches import Decoded, fold_into
    from tables.replay import Position

    class Writes(dict[str, Any]):
        count = 0

        def __setitem__(self, key: str, value: Any) -> None:
            Writes.count += 1
            super().__setitem__(key, value)

    def item(partition: int, offset: int, key: str) -> Decoded[Any]:
        record = type("Record", (), {"key": key, "event_id": f"e{partition}-{offset}"})()
        return Decoded(record, Position("t", offset, record.event_id),
                       FakeEvent(partition, offset))  # type: ignore[arg-type]

    def add_one(record: Any) -> Any:
        return lambda row: {"n": (row or {}).get("n", 0) + 1}

    batch = [item(0, 1, "a"), item(0, 2, "a"), item(1, 1, "b"), item(0, 4, "a")]
    table = Writes()
    assert fold_into(table, batch, lambda r: r.key, add_one) == []
    assert (table["a"]["n"], table["b"]["n"], Writes.count) == (3, 1, 2)


def test_an_update_that_raises_is_reported_and_the_rest_applied() -> None:
    from agents.batches import Decoded, fold_into
    from tables.replay import Position

    def item(offset: int, fail: bool) -> Decoded[Any]:
        record = type("Record", (), {"fail": fail, "event_id": f"e{offset}"})()
        return Decoded(record, Position("t", offset, record.event_id),
                       FakeEvent(0, offset))  # type: ignore[arg-type]

    def update_of(record: Any) -> Any:
        def update(row: Any) -> Any:
            if record.fail:
                raise ValueError("bad row")
            return {"n": (row or {}).get("n", 0) + 1}
        return update

    table: dict[str, Any] = {}
    batch = [item(1, False), item(2, True), item(3, False)]
    failed = fold_into(table, batch, lambda r: "k", update_of)
    assert [(event.message.offset, str(exc)) for event, exc in failed] == [(2, "bad row")]
    assert table["k"]["n"] == 2
    assert fold_into(table, batch[:1] + batch[2:], lambda r: "k", update_of) == []
    assert table["k"]["n"] == 2, "a redelivered batch changes nothing"
