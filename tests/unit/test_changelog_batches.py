"""Table changelog records in bulk (runtime/changelog.py), against a stand-in Kafka client that
keeps the batches it is given and delivers them when the test says so."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from runtime.changelog import ChangelogBatches, ChangelogNotDelivered

T0, T1 = TP("shopstream-orders-changelog", 0), TP("shopstream-orders-changelog", 1)


class _Batch:
    def __init__(self, capacity: int) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.capacity = capacity
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def append(self, *, key: bytes, value: bytes | None, timestamp: None) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class _Client:
    """create_batch/send_batch as aiokafka's producer has them; a partition's offsets count
    up from 0, and a batch is delivered by :meth:`deliver`."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.sent: list[tuple[TP, list[tuple[bytes, bytes | None]], asyncio.Future[Any]]] = []
        self.ends: dict[TP, int] = {}

    def create_batch(self) -> _Batch:
        return _Batch(self.capacity)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        assert batch.closed and batch.records
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((TP(topic, partition), batch.records, future))
        return future

    def deliver(self, index: int, failure: BaseException | None = None) -> None:
        tp, records, future = self.sent[index]
        if failure is not None:
            future.set_exception(failure)
            return
        base = self.ends.get(tp, 0)
        self.ends[tp] = base + len(records)
        future.set_result(SimpleNamespace(offset=base))


class _Store:
    def __init__(self) -> None:
        self.persisted: dict[TP, int] = {}

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_one_turns_records_go_out_as_one_batch_a_partition_in_order() -> None:
    async def run() -> None:
        client, store = _Client(), _Store()
        batches = ChangelogBatches(lambda: client)
        batches.append("orders", store, T0, b"a", b"1")
        batches.append("orders", store, T1, b"b", b"2")
        batches.append("orders", store, T0, b"a", None)  # a deletion after the write
        assert client.sent == [], "handed over on the next turn of the loop, not at once"
        await _turns()
        assert [(tp, records) for tp, records, _ in client.sent] == [
            (T0, [(b"a", b"1"), (b"a", None)]), (T1, [(b"b", b"2")])]
        client.deliver(0)
        client.deliver(1)
        await _turns()
        assert store.persisted == {T0: 1, T1: 0}, "a batch's last offset, once delivered"
        assert batches.pending == 0

    asyncio.run(run())


def test_records_written_while_a_batch_is_in_flight_wait_and_go_out_together() -> None:
    async def run() -> None:
        client, store = _Client(), _Store()
        batches = ChangelogBatches(lambda: client)
        batches.append("orders", store, T0, b"a", b"1")
        await _turns()
        assert len(client.sent) == 1
        for n in range(5):  # several turns' writes while the first batch is in flight
            batches.append("orders", store, T0, b"k%d" % n, b"v")
            await _turns()
        assert len(client.sent) == 1 and batches.pending == 5
        client.deliver(0)
        await _turns()
        assert len(client.sent) == 2 and len(client.sent[1][1]) == 5, "group commit"
        client.deliver(1)
        await _turns()
        assert store.persisted == {T0: 5}

    asyncio.run(run())


def test_a_full_batch_is_continued_in_the_next_in_order() -> None:
    async def run() -> None:
        client, store = _Client(capacity=2), _Store()
        batches = ChangelogBatches(lambda: client)
        for n in range(5):
            batches.append("orders", store, T0, b"k%d" % n, b"v")
        flushed = asyncio.ensure_future(batches.flush())
        await _turns()
        assert [[key for key, _ in records] for _, records, _ in client.sent] == [
            [b"k0", b"k1"], [b"k2", b"k3"], [b"k4"]]
        assert not flushed.done(), "flush waits until every batch is delivered"
        for index in range(3):
            client.deliver(index)
        await flushed
        assert store.persisted == {T0: 4}

    asyncio.run(run())


def test_a_batch_not_delivered_fails_this_flush_and_every_later_one() -> None:
    async def run() -> None:
        client, store = _Client(), _Store()
        batches = ChangelogBatches(lambda: client)
        batches.append("orders", store, T0, b"a", b"1")
        flushed = asyncio.ensure_future(batches.flush())
        await _turns()
        client.deliver(0, failure=RuntimeError("broker gone"))
        with pytest.raises(ChangelogNotDelivered, match="broker gone"):
            await flushed
        assert store.persisted == {}
        batches.append("orders", store, T0, b"a", b"2")
        flushed = asyncio.ensure_future(batches.flush())
        await _turns()
        client.deliver(1)
        with pytest.raises(ChangelogNotDelivered, match="broker gone"):
            await flushed  # the lost record is still lost: no later commit may pass it
        assert store.persisted == {T0: 0}

    asyncio.run(run())


def test_a_batch_the_client_refuses_fails_every_later_flush() -> None:
    class Refusing(_Client):
        async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
            raise TimeoutError("no metadata for the topic")

    async def run() -> None:
        batches = ChangelogBatches(lambda: Refusing())
        batches.append("orders", _Store(), T0, b"a", b"1")
        for _ in range(2):
            with pytest.raises(ChangelogNotDelivered, match="no metadata"):
                await batches.flush()

    asyncio.run(run())


def test_a_flush_with_nothing_pending_returns_at_once() -> None:
    async def run() -> None:
        batches = ChangelogBatches(lambda: _Client())
        await asyncio.wait_for(batches.flush(), timeout=1)

    asyncio.run(run())


def test_a_table_write_stores_and_sends_the_same_bytes_in_the_events_partition(
        monkeypatch: Any) -> None:
    from runtime import tables as base
    from tables.orders import orders

    async def run() -> None:
        client, stored = _Client(), []
        batches = ChangelogBatches(lambda: client)
        store = orders._new_store_by_url("rocksdb://")
        monkeypatch.setattr(store, "_set", lambda key, value: stored.append((key, value)))
        monkeypatch.setattr(store, "_del", lambda key: stored.append((key, None)))
        monkeypatch.setattr(store, "set_persisted_offset", lambda tp, offset: None)
        monkeypatch.setattr(orders, "_data", store)
        monkeypatch.setattr(orders, "_batches", batches)
        monkeypatch.setattr(orders, "_changelog_name", "shopstream-orders-changelog")
        monkeypatch.setattr(orders, "_sensor_on_set", lambda *args: None)
        monkeypatch.setattr(orders, "_sensor_on_del", lambda *args: None)
        monkeypatch.setattr(base, "current_event", lambda: None)
        with pytest.raises(TypeError, match="outside of stream iteration"):
            orders["o-1"] = {"status": "placed"}
        event = SimpleNamespace(message=SimpleNamespace(partition=1))
        monkeypatch.setattr(base, "current_event", lambda: event)
        orders["o-1"] = {"status": "placed", "total_cents": 250}
        del orders["o-1"]
        await _turns()
        assert stored == [(b"o-1", b'{"status":"placed","total_cents":250}'), (b"o-1", None)]
        assert client.sent[0][0] == T1 and client.sent[0][1] == stored

    asyncio.run(run())
