"""Packs of tracked events: the wire format (models/analytics.py), the fast decode of an
event and the collector that packs requests' events per partition (agents/tracking.py)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from agents.tracking import TrackingCollector, pack_by_partition, partition_of
from models.analytics import (
    MAX_PACKED,
    PACKED_TYPE,
    Tracked,
    TrackedFields,
    pack_tracked,
    read_tracked,
    tracked_items,
)
from models.base import EventDecodeError, event_from_data, json_object
from models.tracing import REQUEST_ID

keys = st.text(min_size=1, max_size=40)


@given(keys, st.integers(1, 64))
def test_a_session_goes_to_the_partition_the_kafka_producer_picks(key: str, n: int) -> None:
    partitions = list(range(n))
    assert partition_of(key, n) == DefaultPartitioner()(key.encode(), partitions, partitions)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([f"s{i}" for i in range(30)]), st.binary(max_size=8)),
                max_size=200),
       st.integers(1, 8), st.integers(1, 10))
def test_packs_hold_every_event_once_in_order_in_its_sessions_partition(
    events: list[tuple[str, bytes]], partitions: int, size: int,
) -> None:
    tagged = [(session, b"%d:" % n + value) for n, (session, value) in enumerate(events)]
    packs = pack_by_partition(tagged, partitions, size)
    owner = {value: session for session, value in tagged}
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for key, pack in packs:
        assert 0 < len(pack) <= size
        assert owner[pack[0]] == key, "a pack is keyed by its first event's session"
        partition = partition_of(key, partitions)
        assert {partition_of(owner[value], partitions) for value in pack} == {partition}
        by_partition[partition].extend(pack)
    for partition, values in by_partition.items():
        assert values == [v for s, v in tagged if partition_of(s, partitions) == partition]
    assert sum(len(pack) for _, pack in packs) == len(tagged)


def tracked(n: int, **fields: Any) -> Tracked:
    return Tracked(type="product_view", event_id=f"e{n}", session_id="sess-12345678",
                   occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
                   sku=f"SKU-{n}", **fields)


@given(st.integers(1, 60))
def test_a_pack_holds_its_events_as_they_were_sent(count: int) -> None:
    events = [tracked(n) for n in range(count)]
    data = json_object(pack_tracked("pack-1", [e.dumps() for e in events],
                                    occurred_at="2026-01-01T00:00:00+00:00"))
    assert (data["type"], data["event_id"]) == (PACKED_TYPE, "pack-1")
    assert [event_from_data(Tracked, item) for item in tracked_items(data)] == events


def test_one_event_is_a_message_of_its_own() -> None:
    data = json_object(tracked(1).dumps())
    assert tracked_items(data) == [data]


@pytest.mark.parametrize(("pack", "error"), [
    ({"events": []}, "non-empty list of events"),
    ({"events": {"a": 1}}, "non-empty list of events"),
    ({}, "non-empty list of events"),
    ({"events": [{}] * (MAX_PACKED + 1)}, f"at most {MAX_PACKED} events"),
    ({"events": [{}], "event_id": ""}, "must have an event_id"),
])
def test_a_malformed_pack_is_refused_with_the_reason(pack: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        tracked_items({"type": PACKED_TYPE, "event_id": "p1", **pack})


def test_a_pack_must_hold_one_to_max_events() -> None:
    with pytest.raises(ValueError, match="1 to"):
        pack_tracked("p", [], occurred_at="x")


# -- read_tracked is event_from_data(Tracked) without the Faust record ------------------------

zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5,
                                                                             minutes=-30))])
times = st.one_of(
    st.datetimes(timezones=zones).map(lambda t: t.isoformat()),
    st.datetimes(timezones=zones).map(lambda t: t.isoformat(timespec="milliseconds")),
    st.datetimes().map(lambda t: t.isoformat()),  # no zone: refused
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["soon", "", "2026-05-01", "2026-05-01 10:00:00+00:00"]),
    st.integers(), st.none(),
)
texts = st.one_of(st.text(max_size=5), st.none(), st.integers(), st.booleans())
events = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["page_view", "product_view", "search", "purchase", "", 3]),
    "event_id": texts, "session_id": texts, "occurred_at": times, "correlation_id": texts,
    "schema_version": st.one_of(st.integers(0, 3), st.booleans(), st.text(max_size=2)),
    "user_id": texts, "sku": texts, "query": texts, "path": texts, "extra": texts,
})


@settings(max_examples=1_000)
@given(events)
def test_read_tracked_accepts_and_refuses_exactly_as_the_record_does(data: dict[str, Any]) -> None:
    try:
        record = event_from_data(Tracked, dict(data))
    except EventDecodeError as exc:
        with pytest.raises(EventDecodeError) as refused:
            read_tracked(data)
        assert str(refused.value) == str(exc)
        return
    fields = read_tracked(data)
    assert fields == TrackedFields(record.type, record.event_id, record.occurred_at,
                                   record.session_id, record.correlation_id, record.user_id,
                                   record.sku, record.query, record.path)


# -- The collector ------------------------------------------------------------------------------


class Topic:
    """What the collector uses of a Faust topic: ``partitions`` and ``send``."""

    partitions = 4

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, list[dict[str, Any]]]] = []
        self.fail = fail
        self.declared = False
        self.request_ids: list[str] = []  # the request id current at each send

    def get_topic_name(self) -> str:
        return "analytics"

    async def maybe_declare(self) -> None:
        self.declared = True

    async def send(self, *, key: str, value: bytes) -> asyncio.Future[None]:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.sent.append((key, tracked_items(json.loads(value))))
        self.request_ids.append(REQUEST_ID.get())
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, delivered.set_result, None)
        return delivered


def sessions_of(partition: int, count: int) -> list[str]:
    found = (f"sess-{n:08d}" for n in range(10_000))
    return [s for s in found if partition_of(s, Topic.partitions) == partition][:count]


def event(session: str, n: int) -> bytes:
    return json.dumps({"session_id": session, "n": n}).encode()


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_requests_of_one_partition_within_the_linger_go_as_one_pack() -> None:
    packs, packed = sample("shop_tracking_packs_total"), sample("shop_tracking_packed_events_total")
    topic = Topic()
    collector = TrackingCollector(topic, linger_s=0.05)  # type: ignore[arg-type]
    a, b = sessions_of(1, 2)
    [c] = sessions_of(2, 1)
    await asyncio.gather(collector.send(a, [event(a, 1), event(a, 2)]),
                         collector.send(b, [event(b, 3)]),
                         collector.send(c, [event(c, 4)]))
    assert sorted(topic.sent) == sorted([
        (a, [{"session_id": a, "n": 1}, {"session_id": a, "n": 2}, {"session_id": b, "n": 3}]),
        (c, [{"session_id": c, "n": 4}]),
    ])
    assert topic.declared, "the topic is declared with the app's partitions before a send"
    assert sample("shop_tracking_packs_total") == packs + 2
    assert sample("shop_tracking_packed_events_total") == packed + 4


async def test_a_request_returns_once_its_pack_is_acknowledged() -> None:
    topic = Topic()
    collector = TrackingCollector(topic, linger_s=0.05)  # type: ignore[arg-type]
    [a] = sessions_of(0, 1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await collector.send(a, [event(a, 1)])
    assert loop.time() - began >= 0.05, "waited for the linger and the acknowledgement"
    assert len(topic.sent) == 1


async def test_a_full_pack_leaves_without_waiting_for_the_linger() -> None:
    topic = Topic()
    collector = TrackingCollector(topic, linger_s=60, pack_events=3)  # type: ignore[arg-type]
    [a] = sessions_of(3, 1)
    async with asyncio.timeout(5):
        await collector.send(a, [event(a, n) for n in range(3)])
    assert [len(items) for _, items in topic.sent] == [3]


async def test_a_pack_of_many_requests_is_sent_as_none_of_them() -> None:
    topic = Topic()
    collector = TrackingCollector(topic, linger_s=60, pack_events=2)  # type: ignore[arg-type]
    a, b = sessions_of(1, 2)

    async def request(rid: str, session: str) -> None:
        REQUEST_ID.set(rid)  # each task has its own context, as each HTTP request does
        await collector.send(session, [event(session, 1)])

    async with asyncio.timeout(5):
        await asyncio.gather(request("req-a", a), request("req-b", b))
    assert [len(items) for _, items in topic.sent] == [2]
    assert topic.request_ids == [""]


async def test_a_pack_that_cannot_be_sent_fails_every_request_in_it() -> None:
    collector = TrackingCollector(Topic(fail=True), linger_s=0.01)  # type: ignore[arg-type]
    a, b = sessions_of(1, 2)
    results = await asyncio.gather(collector.send(a, [event(a, 1)]),
                                   collector.send(b, [event(b, 2)]), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
