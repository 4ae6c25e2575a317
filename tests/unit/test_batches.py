"""agents/batches.py: a batch folded into its rows with one write a row, replay-guarded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st


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


def test_a_batch_leaves_events_of_an_earlier_generation_unacknowledged() -> None:
    from faust.types.tuples import ConsumerMessage as Message

    from agents.batches import STALE, current_events

    class Consumer:
        acked: list[int] = []

        def ack(self, message: Message) -> bool:
            self.acked.append(message.offset)
            return True

    def event(offset: int, generation: int | None) -> Any:
        message = Message("analytics", 6, offset, 0.0, 0, None, b"k", b"v", None,
                          generation_id=generation)
        message.refcount = 1
        return type("Event", (), {"message": message})()

    before = STALE._value.get()
    batch = [event(247, 3), event(248, 3), event(249, 4), event(250, None)]
    current = current_events(batch, generation=4)
    assert [e.message.offset for e in current] == [249, 250]
    assert STALE._value.get() == before + 2
    consumer = Consumer()
    for item in batch:  # what take_events does with the whole buffer afterwards
        item.message.ack(consumer)
    assert consumer.acked == [249, 250], "no commit of this worker goes past the stale ones"


@given(st.lists(st.tuples(st.sampled_from(["analytics", "orders"]), st.integers(0, 2),
                          st.integers(0, 5)), max_size=40))
def test_a_batch_keeps_the_first_copy_of_each_message(where: list[tuple[str, int, int]]) -> None:
    from agents.batches import distinct_messages

    events = [SimpleNamespace(message=SimpleNamespace(topic=t, partition=p, offset=o), n=n)
              for n, (t, p, o) in enumerate(where)]
    kept: list[Any] = distinct_messages(events)  # type: ignore[arg-type]
    positions = [(e.message.topic, e.message.partition, e.message.offset) for e in kept]
    assert positions == list(dict.fromkeys(where)), "each message once, in the batch's order"
    assert [e.n for e in kept] == [where.index(p) for p in positions], "the first copy"


async def test_ready_batches_hand_each_message_over_once() -> None:
    from agents.batches import COPIES, ready_batches

    def event(offset: int) -> Any:
        return SimpleNamespace(message=SimpleNamespace(topic="analytics", partition=1,
                                                       offset=offset, generation_id=7))

    class Stream:
        app = SimpleNamespace(consumer_generation_id=7)

        async def take_events(self, max_events: int, within: float) -> Any:
            yield [event(40), event(41), event(40), event(42), event(41)]

    before = COPIES._value.get()
    batches = [[e.message.offset for e in batch]
               async for batch in ready_batches(Stream(), 10)]  # type: ignore[arg-type]
    assert batches == [[40, 41, 42]]
    assert COPIES._value.get() == before + 2


def test_write_back_reads_its_own_writes_and_writes_each_row_once_deletions_last() -> None:
    from agents.batches import WriteBack

    class Recording(dict[str, Any]):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.log: list[tuple[str, Any]] = []

        def __setitem__(self, key: str, value: Any) -> None:
            self.log.append((key, value))
            super().__setitem__(key, value)

        def pop(self, key: str, default: Any = None) -> Any:
            self.log.append((key, None))
            return super().pop(key, default)

    table = Recording({"old": {"n": 0}, "gone": {"n": 9}})
    rows = WriteBack(table)
    rows["a"] = {"n": 1}
    rows["old"] = {"n": 1}
    del rows["gone"]
    rows["a"] = {"n": 2}
    assert rows.get("a") == {"n": 2} and "gone" not in rows and rows.get("gone") is None
    assert rows["old"] == {"n": 1} and table["old"] == {"n": 0}  # nothing written yet
    assert rows.writes == 3
    rows.write()
    assert table.log == [("old", {"n": 1}), ("a", {"n": 2}), ("gone", None)]
    assert rows.writes == 0 and rows.get("a") == {"n": 2}
    assert WriteBack(WriteBack(table)).name == "?"  # the replay guard counts by table name
