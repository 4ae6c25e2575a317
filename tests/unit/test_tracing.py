"""Following a request: the header on every event it causes, the id and subject on every log
record written meanwhile, and the timeline of its steps (models/tracing.py and its users)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from faust.tables.recovery import RecoveryStats
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from agents import sending
from agents.dead_letters import for_each_event
from agents.sending import send_all, to_rabbit
from agents.topics import orders_topic
from models.inventory import ReserveStock
from models.tracing import (
    NO_SUBJECT,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    SUBJECT,
    header_request_id,
    kafka_headers,
    request_ids_of,
    started_at,
    step_of,
    subject_of,
    timeline,
)
from rabbit_bridge.consumer import QueueConsumer
from rabbit_bridge.log_records import log_entry, log_json, ships
from rabbit_bridge.log_store import LogFilter
from tables.replay import Position
from web.middleware import install_request_id_logging
from web.operations import missing_topics, restoring

ids = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)


@given(ids)
def test_a_request_id_goes_through_kafka_and_rabbitmq_headers(request_id: str) -> None:
    headers = kafka_headers(request_id)
    assert headers is not None
    assert header_request_id(headers) == request_id
    assert header_request_id([(REQUEST_ID_HEADER.encode(), request_id.encode())]) == request_id
    assert header_request_id({REQUEST_ID_HEADER: request_id, "x-attempt": 2}) == request_id


@pytest.mark.parametrize("headers", [
    None, [], {}, [("other", b"r-1")], [(REQUEST_ID_HEADER, b"")],
    [(REQUEST_ID_HEADER, b"bad id with spaces")], [(REQUEST_ID_HEADER, b"\xff\xfe")],
    [(REQUEST_ID_HEADER, b"x" * 129)],
])
def test_no_usable_request_id_is_none(headers: Any) -> None:
    assert header_request_id(headers) == ""
    assert kafka_headers("") is None


def test_an_event_names_its_order_ticket_and_user() -> None:
    reserve = ReserveStock.new(sku="sku-1", order_id="o-1", quantity=2)
    assert subject_of(reserve) == ("o-1", "", "")
    assert subject_of(SimpleNamespace(ticket_id="t-1", user_id="u-1")) == ("", "t-1", "u-1")
    assert subject_of(object()) == NO_SUBJECT


def test_a_shop_topic_adds_the_request_id_being_handled() -> None:
    assert not orders_topic.prepare_headers(None)
    token = REQUEST_ID.set("req-7")
    try:
        assert orders_topic.prepare_headers(None) == [(REQUEST_ID_HEADER, b"req-7")]
        assert orders_topic.prepare_headers([("a", b"1")]) == [("a", b"1"),
                                                                (REQUEST_ID_HEADER, b"req-7")]
        assert orders_topic.prepare_headers({"a": b"1"}) == {"a": b"1",
                                                             REQUEST_ID_HEADER: b"req-7"}
    finally:
        REQUEST_ID.reset(token)


class Stream:
    """What for_each_event reads of a Faust stream: ``events()`` with ``.message``."""

    def __init__(self, values: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
        self.messages = [SimpleNamespace(topic="inventory", partition=2, offset=40 + i,
                                         key=b"sku-1", value=value, headers=headers)
                         for i, (value, headers) in enumerate(values)]

    async def events(self) -> AsyncIterator[SimpleNamespace]:
        for message in self.messages:
            yield SimpleNamespace(message=message)


async def test_an_event_a_request_caused_is_handled_with_its_id_and_logged_as_a_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_request_id_logging()  # as the worker does with its web layer (web/server.py)
    traced = ReserveStock.new(sku="sku-1", order_id="o-9", quantity=1)
    plain = ReserveStock.new(sku="sku-1", order_id="o-10", quantity=1)
    seen: list[tuple[str, tuple[str, str, str], list[Any]]] = []
    handling = logging.getLogger("agents.inventory")

    async def handler(event: ReserveStock, position: Position) -> None:
        handling.info("holding %s", event.order_id)
        seen.append((REQUEST_ID.get(), SUBJECT.get(), orders_topic.prepare_headers(None)))

    stream = Stream([(traced.dumps(), [(REQUEST_ID_HEADER, b"req-1")]), (plain.dumps(), [])])
    with caplog.at_level(logging.INFO):
        await for_each_event(stream, ReserveStock, handler, agent="inventory.stock")  # type: ignore[arg-type]

    assert seen == [("req-1", ("o-9", "", ""), [(REQUEST_ID_HEADER, b"req-1")]),
                    ("", NO_SUBJECT, {})]
    assert (REQUEST_ID.get(), SUBJECT.get()) == ("", NO_SUBJECT)  # put back after each event
    [step] = [r for r in caplog.records if r.name == "trace.events"]
    assert step.request_id == "req-1"  # type: ignore[attr-defined]
    assert step.trace == {"kind": "event", "agent": "inventory.stock",  # type: ignore[attr-defined]
                          "topic": "inventory", "partition": 2, "offset": 40,
                          "type": "reserve_stock", "event_id": traced.event_id}
    holding = [r for r in caplog.records if r.name == "agents.inventory"]
    assert [(r.request_id, r.shop_subject) for r in holding] == [  # type: ignore[attr-defined]
        ("req-1", ("o-9", "", "")), ("", NO_SUBJECT)]
    entry = log_entry(holding[0], holding[0].getMessage(), "w1")
    assert (entry["request_id"], entry["order_id"]) == ("req-1", "o-9")
    assert "order_id" not in log_entry(holding[1], holding[1].getMessage(), "w1")
    assert ships(step)


@given(order_id=st.one_of(st.just(""), ids), ticket_id=st.one_of(st.just(""), ids),
       subject=st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)),
       trace=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.one_of(
           st.integers(), st.text(max_size=10), st.floats(allow_nan=False)), max_size=4)))
def test_the_shippers_json_says_what_the_entry_says_with_ids_and_trace(
        order_id: str, ticket_id: str, subject: tuple[str, str, str],
        trace: dict[str, Any] | None) -> None:
    made = logging.LogRecord("trace.events", logging.INFO, __file__, 1, "step", (), None)
    made.request_id, made.shop_subject = "r-1", subject  # type: ignore[attr-defined]
    if order_id:
        made.order_id = order_id  # type: ignore[attr-defined]
    if ticket_id:
        made.ticket_id = ticket_id  # type: ignore[attr-defined]
    if trace is not None:
        made.trace = trace  # type: ignore[attr-defined]
    _, text = log_json(made, "step", '"w"', "id-1")
    entry = log_entry(made, "step", "w", "id-1")
    assert json.loads(text) == entry
    assert entry.get("order_id", "") == (order_id or subject[0])
    assert entry.get("ticket_id", "") == (ticket_id or subject[1])
    assert entry.get("user_id", "") == subject[2]


def test_the_log_filter_finds_a_record_by_what_it_names() -> None:
    entry = {"request_id": "r-1", "order_id": "o-1", "user_id": "u-1", "message": "x"}
    assert LogFilter(order_id="o-1").matches(entry)
    assert not LogFilter(order_id="o-2").matches(entry)
    assert LogFilter(user_id="u-1").matches(entry) and not LogFilter(ticket_id="t").matches(entry)
    assert all(LogFilter(about=i).matches(entry) for i in ("r-1", "o-1", "u-1"))
    assert not LogFilter(about="x").matches(entry)
    assert LogFilter(request_ids=frozenset({"r-1", "r-2"})).matches(entry)
    assert not LogFilter(request_ids=frozenset({"r-2"})).matches(entry)


T0 = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def test_an_http_request_begins_before_it_was_logged() -> None:
    http = {"time": at(1.0), "trace": {"kind": "http", "ms": 250.0}}
    assert started_at(http) == at(0.75)
    assert started_at({"time": at(1.0), "trace": {"kind": "event"}}) == at(1.0)
    assert started_at({"time": at(1.0), "trace": {"kind": "http", "ms": "x"}}) == at(1.0)


def test_the_timeline_puts_the_request_before_what_it_caused() -> None:
    entries = [
        {"event_id": "e2", "time": at(0.20), "message": "reserve",
         "trace": {"kind": "event", "topic": "inventory", "partition": 1, "offset": 5,
                   "type": "reserve_stock"}, "request_id": "r", "order_id": "o"},
        {"event_id": "h", "time": at(0.30), "message": "POST /api/orders 202",
         "trace": {"kind": "http", "method": "POST", "path": "/api/orders", "ms": 200.0},
         "request_id": "r"},
        {"event_id": "e1", "time": at(0.15), "message": "placed", "request_id": "r",
         "trace": {"kind": "event", "topic": "orders", "partition": 0, "offset": 3,
                   "type": "order_placed"}},
        {"event_id": "e2", "time": at(0.20), "message": "the same record from another look"},
    ]
    steps = [step_of(step) for step in timeline(entries)]
    assert [(s["kind"], s["what"], s["type"]) for s in steps] == [
        ("http", "POST /api/orders", ""),
        ("event", "orders[0]@3", "order_placed"),
        ("event", "inventory[1]@5", "reserve_stock"),
    ]
    assert steps[0]["at"] == at(0.10)
    assert request_ids_of(entries) == ["r"]


@given(st.lists(st.fixed_dictionaries({
    "event_id": st.sampled_from(["a", "b", "c", "d", ""]),
    "time": st.floats(0, 1000).map(at),
    "trace": st.one_of(st.none(), st.fixed_dictionaries(
        {"kind": st.just("http"), "ms": st.floats(0, 5000)})),
}), max_size=12))
def test_the_timeline_is_ordered_and_has_each_record_once(entries: list[dict[str, Any]]) -> None:
    steps = timeline(entries)
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    named = [s["event_id"] for s in steps if s["event_id"]]
    assert len(named) == len(set(named))
    assert {e["event_id"] for e in entries} == {s["event_id"] for s in steps}


def test_a_restore_names_what_each_changelog_partition_still_needs() -> None:
    stats = {TP("shopstream-orders-changelog", 2): RecoveryStats(8, -1, 9),
             TP("shopstream-catalog-changelog", 0): RecoveryStats(69, 40, 29),
             TP("shopstream-sales-changelog", 0): RecoveryStats(19, 52, -33)}  # stale
    assert restoring(stats) == {"shopstream-catalog-changelog[0]": 29,
                                "shopstream-orders-changelog[2]": 9}
    assert restoring({}) == {}


def test_missing_topics_are_named() -> None:
    wanted = {"orders": 8, "catalog": 1}
    assert missing_topics({"orders": 8, "catalog": 1, "other": 3}, wanted) == []
    assert missing_topics({"orders": 4}, wanted) == ["catalog", "orders"]


async def test_rabbitmq_messages_carry_the_request_id_and_their_consumers_hold_it() -> None:
    published: list[Any] = []
    token = REQUEST_ID.set("req-9")
    try:
        services = SimpleNamespace(publisher=SimpleNamespace(publish_durable=published.extend))
        with patch.object(sending.app, "services", services, create=True):
            await send_all([to_rabbit("", "shop.notifications", "mail-1", {"id": "mail-1"})])
    finally:
        REQUEST_ID.reset(token)
    [message] = published
    assert message.headers == {REQUEST_ID_HEADER: "req-9"}

    held: list[str] = []

    async def handle(_: Any) -> None:
        held.append(REQUEST_ID.get())

    consumer = QueueConsumer(SimpleNamespace(), name="q", declare=AsyncMock(),  # type: ignore[arg-type]
                             handle=handle)
    for message_id, headers in (("m-1", message.headers), ("m-2", {}), ("m-3", None)):
        await consumer._on_message(SimpleNamespace(  # type: ignore[arg-type]
            message_id=message_id, headers=headers, ack=AsyncMock(), reject=AsyncMock()))
    assert held == ["req-9", "", ""]
    assert REQUEST_ID.get() == ""
