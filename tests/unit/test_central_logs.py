"""The central log's pure parts: service names, record JSON, filters, the store, no feedback."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rabbit_bridge.central_logs import _stored_as_is
from rabbit_bridge.log_records import log_entry, log_json, routing_key, service_name, ships
from rabbit_bridge.log_shipping import RECORDS_HEADER, LogShipping, ShippingHandler
from rabbit_bridge.log_store import LogFilter, LogStore
from rabbit_bridge.topology import LOGS_EXCHANGE
from web.admin import LogQuery, merge_newest_first


@pytest.mark.parametrize(("logger", "service"), [
    ("agents.orders", "orders"), ("web.users", "users"), ("app", "app"),
    ("tables.catalog.sub", "catalog"), ("faust.worker", "faust"), ("web", "web"),
    ("", "root"), ("Weird Name.x", "weird-name"), ("agents.Dead.Letters", "dead"),
])
def test_the_service_is_named_by_the_logger(logger: str, service: str) -> None:
    assert service_name(logger) == service


def record(name: str = "web.users", level: int = logging.WARNING, msg: str = "bad %s",
           args: tuple[Any, ...] = ("login",), **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_becomes_json_with_its_ids() -> None:
    made = record(request_id="req-1", correlation_id="order-9")
    entry = log_entry(made, made.getMessage(), "http://w1:6066")
    assert entry["service"] == "users" and entry["level"] == "WARNING"
    assert entry["logger"] == "web.users" and entry["message"] == "bad login"
    assert entry["request_id"] == "req-1" and entry["correlation_id"] == "order-9"
    assert entry["worker"] == "http://w1:6066" and entry["exception"] == ""
    assert len(entry["event_id"]) == 32
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    json.dumps(entry)
    assert routing_key(entry["service"], entry["level"]) == "users.warning"


def failed(error: str) -> logging.LogRecord:
    """Return the ERROR record of a ValueError(``error``) just raised and caught."""
    try:
        raise ValueError(error)
    except ValueError:
        return logging.LogRecord("agents.orders", logging.ERROR, __file__, 1, "failed", (),
                                 sys.exc_info())


def test_an_exception_is_formatted() -> None:
    entry = log_entry(failed("boom"), "failed", "w")
    assert "Traceback" in entry["exception"] and "ValueError: boom" in entry["exception"]


@settings(max_examples=300)
@given(logger=st.text(max_size=30), level=st.sampled_from([10, 20, 30, 40, 50, 5]),
       message=st.text(), request_id=st.one_of(st.none(), st.text(max_size=20)),
       correlation_id=st.one_of(st.none(), st.text(max_size=20), st.integers()),
       worker=st.text(max_size=20), created=st.floats(0, 4e9))
def test_the_shippers_json_says_what_the_entry_says(logger: str, level: int, message: str,
                                                    request_id: str | None,
                                                    correlation_id: str | int | None,
                                                    worker: str, created: float) -> None:
    made = record(logger, level, request_id=request_id, correlation_id=correlation_id)
    made.created = created
    key, text = log_json(made, message, json.dumps(worker), "run-1f")
    entry = log_entry(made, message, worker, "run-1f")
    assert json.loads(text) == entry
    assert key == routing_key(entry["service"], entry["level"])


def test_the_shippers_json_carries_the_exception() -> None:
    made = failed("boom \"quoted\"\n")
    _, text = log_json(made, "failed", '"w"', "id-1")
    assert json.loads(text) == log_entry(made, "failed", "w", "id-1")
    assert "ValueError: boom" in json.loads(text)["exception"]


def test_the_bridge_and_quiet_libraries_are_not_shipped() -> None:
    for name in ("rabbit_bridge.publisher", "rabbit_bridge", "aio_pika.robust_connection",
                 "aiormq.connection"):
        assert not ships(record(name, logging.ERROR))
    assert ships(record("rabbit_bridged.x", logging.ERROR))  # only the exact package
    assert ships(record("agents.orders", logging.DEBUG))
    assert not ships(record("faust.worker", logging.INFO))
    assert ships(record("faust.worker", logging.WARNING))


def entry(n: int, level: str = "INFO", service: str = "orders", message: str = "",
          at: datetime | None = None) -> dict[str, Any]:
    when = at or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return {"event_id": f"id-{n}", "time": when.isoformat(), "service": service,
            "level": level, "message": message or f"record {n}"}


def test_filters() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    assert LogFilter(level="WARNING").matches(entry(1, "ERROR"))
    assert LogFilter(level="WARNING").matches(entry(1, "WARNING"))
    assert not LogFilter(level="WARNING").matches(entry(1, "INFO"))
    assert LogFilter(service="orders").matches(entry(1))
    assert not LogFilter(service="users").matches(entry(1))
    assert LogFilter(since=base + timedelta(seconds=5)).matches(entry(5))
    assert not LogFilter(since=base + timedelta(seconds=5)).matches(entry(4))
    assert LogFilter(q="CoRd 7").matches(entry(7))
    assert not LogFilter(q="record 8").matches(entry(7))
    assert not LogFilter(since=base).matches({"time": "not a time"})
    traced = {**entry(9), "request_id": "req-1", "correlation_id": "order-1"}
    assert LogFilter(request_id="req-1").matches(traced)
    assert not LogFilter(request_id="req-2").matches(traced)
    assert not LogFilter(request_id="req-1").matches(entry(9))
    assert LogFilter(correlation_id="order-1", request_id="req-1").matches(traced)
    assert not LogFilter(correlation_id="order-2").matches(traced)


def test_the_query_model_reads_levels_in_any_case_and_naive_times_as_utc() -> None:
    query = LogQuery.model_validate({"level": "warning", "since": "2026-01-01T00:00:00"})
    assert query.chosen().level == "WARNING"
    assert query.chosen().since == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_store_reads_newest_first_with_filters_and_a_limit(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append([entry(n, "ERROR" if n % 10 == 0 else "INFO") for n in range(100)])
    assert [e["event_id"] for e in store.read(LogFilter(), 3)] == ["id-99", "id-98", "id-97"]
    errors = store.read(LogFilter(level="ERROR"), 100)
    assert [e["event_id"] for e in errors] == [f"id-{n}" for n in range(90, -1, -10)]
    store.close()


def test_the_store_stores_a_duplicate_once_even_after_a_restart(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    assert len(store.append([entry(1), entry(2), entry(1)])) == 2
    store.close()
    again = LogStore(tmp_path)
    assert again.append([entry(2), entry(3)]) == [entry(3)]
    assert len(again.read(LogFilter(), 100)) == 3
    again.close()


def test_the_store_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=2_000, keep=3)
    for n in range(200):
        store.append([entry(n, message="x" * 50)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["central.1.jsonl", "central.2.jsonl", "central.jsonl"]
    assert store.size() <= 3 * 2_000
    kept = store.read(LogFilter(), 1000)
    assert kept[0]["event_id"] == "id-199"
    numbers = [int(e["event_id"][3:]) for e in kept]
    assert numbers == list(range(199, 199 - len(numbers), -1)), "newest, without gaps"
    store.close()


def group(numbers: range, level: str = "INFO") -> tuple[str, bytes]:
    """Return (last event id, JSON array) of the records ``numbers``, as the shipper sends."""
    entries = [entry(n, level) for n in numbers]
    return entries[-1]["event_id"], json.dumps(entries, separators=(",", ":")).encode()


def test_the_store_keeps_arrays_as_they_came_and_reads_them_newest_first(tmp_path: Path,
                                                                          ) -> None:
    store = LogStore(tmp_path)
    store.append([entry(0)])
    assert store.append_groups([group(range(1, 4)), group(range(4, 6))]) == [True, True]
    store.append([entry(6)])
    assert [e["event_id"] for e in store.read(LogFilter(), 100)] == [
        f"id-{n}" for n in range(6, -1, -1)]
    assert [line[:1] for line in (tmp_path / "central.jsonl").read_bytes().splitlines()] == [
        b"{", b"[", b"[", b"{"]
    store.close()


def test_the_store_stores_a_redelivered_array_once_even_after_a_restart(tmp_path: Path,
                                                                       ) -> None:
    store = LogStore(tmp_path)
    assert store.append_groups([group(range(3)), group(range(3))]) == [True, False]
    store.close()
    again = LogStore(tmp_path)
    assert again.append_groups([group(range(3)), group(range(3, 5))]) == [False, True]
    assert len(again.read(LogFilter(), 100)) == 5
    again.close()


def test_the_store_rotates_arrays_by_size(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=2_000, keep=3)
    for n in range(0, 200, 4):
        store.append_groups([group(range(n, n + 4))])
    assert store.size() <= 3 * 2_000
    numbers = [int(e["event_id"][3:]) for e in store.read(LogFilter(), 1000)]
    assert numbers[0] == 199
    assert numbers == list(range(199, 199 - len(numbers), -1)), "newest, without gaps"
    store.close()


class Delivery:
    """What the consumer reads of a RabbitMQ delivery."""

    def __init__(self, body: bytes, routing_key: str, message_id: str | None,
                 headers: dict[str, Any] | None) -> None:
        self.body, self.routing_key = body, routing_key
        self.message_id, self.headers = message_id, headers


def stored_as_is(delivery: Delivery) -> tuple[str, bytes, int] | None:
    return _stored_as_is(delivery)  # type: ignore[arg-type]


def test_only_the_shippers_arrays_below_the_alert_level_are_stored_undecoded() -> None:
    last, body = group(range(3))
    shipped = {RECORDS_HEADER: 3}
    assert stored_as_is(Delivery(body, "users.info", last, shipped)) == (last, body, 3)
    assert stored_as_is(Delivery(body, "users.warning", last, shipped)) == (last, body, 3)
    for alert in ("users.error", "users.critical"):  # decoded: an alert is raised
        assert stored_as_is(Delivery(body, alert, last, shipped)) is None
    assert stored_as_is(Delivery(body, "users.info", last, None)) is None
    assert stored_as_is(Delivery(body, "users.info", None, shipped)) is None
    assert stored_as_is(Delivery(body, "users.info", last, {RECORDS_HEADER: "3"})) is None
    single = json.dumps(entry(1)).encode()
    assert stored_as_is(Delivery(single, "users.info", "id-1", shipped)) is None
    two_lines = body + b"\n" + body  # one stored line each: never a newline inside
    assert stored_as_is(Delivery(two_lines, "users.info", last, shipped)) is None


def test_merging_workers_answers_is_newest_first_once_each() -> None:
    one = [entry(5), entry(3), entry(1)]
    two = [entry(4), entry(3), entry(2)]
    merged = merge_newest_first([one, two], 4)
    assert [e["event_id"] for e in merged] == ["id-5", "id-4", "id-3", "id-2"]


class FakePublisher:
    """Keeps what is published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, str | None]] = []

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                message_id: str | None = None, headers: dict[str, Any] | None = None) -> str:
        assert headers == {RECORDS_HEADER: len(json.loads(body))}
        self.published.append((exchange, routing_key, body, message_id))
        return message_id or ""


async def test_records_are_shipped_from_any_thread_and_never_recurse() -> None:
    publisher = FakePublisher()
    shipping = LogShipping(publisher, worker="http://w:1")  # type: ignore[arg-type]
    logger = logging.getLogger("web.shiptest")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = shipping.install(logger)
    try:
        logger.info("from the loop %d", 1)
        thread = threading.Thread(target=lambda: logger.warning("from a thread"))
        thread.start()
        thread.join()
        logging.getLogger("rabbit_bridge.publisher").error("never shipped")
        await asyncio.sleep(0.01)  # the thread's record arrives through call_soon_threadsafe
        assert shipping.pending == 2
        # Anything logged while shipping (here: by the publisher) is not shipped again.
        original = publisher.publish

        def noisy(*args: Any, **kwargs: Any) -> str:
            logger.error("logged while shipping")
            return original(*args, **kwargs)

        publisher.publish = noisy  # type: ignore[method-assign]
        assert shipping.ship_pending() == 2
        assert shipping.pending == 0
    finally:
        shipping.uninstall(logger)
        logger.propagate = True
    assert isinstance(handler, ShippingHandler)
    assert [(e, k) for e, k, _, _ in publisher.published] == [
        (LOGS_EXCHANGE, "shiptest.info"), (LOGS_EXCHANGE, "shiptest.warning")]
    bodies = [json.loads(body) for _, _, body, _ in publisher.published]
    assert [[b["message"] for b in batch] for batch in bodies] == [
        ["from the loop 1"], ["from a thread"]]


async def test_records_of_one_routing_key_share_messages() -> None:
    publisher = FakePublisher()
    shipping = LogShipping(publisher, worker="w")  # type: ignore[arg-type]
    for n in range(450):
        shipping.accept(record("agents.orders", logging.INFO, "n=%d", (n,)), f"n={n}")
    shipping.accept(record("agents.orders", logging.ERROR), "failed")
    assert shipping.ship_pending() == 451
    keys = [k for _, k, _, _ in publisher.published]
    assert keys == ["orders.info", "orders.info", "orders.info", "orders.error"]
    batches = [json.loads(body) for _, _, body, _ in publisher.published]
    assert [len(b) for b in batches] == [200, 200, 50, 1]
    messages = [e["message"] for b in batches[:3] for e in b]
    assert messages == [f"n={n}" for n in range(450)]
    assert len({e["event_id"] for b in batches for e in b}) == 451
    # A message's id is its last record's event id: the store spots a duplicate by it.
    assert [m for _, _, _, m in publisher.published] == [b[-1]["event_id"] for b in batches]


async def test_a_full_queue_drops_and_counts() -> None:
    shipping = LogShipping(FakePublisher(), worker="w", max_pending=2)  # type: ignore[arg-type]
    for n in range(5):
        shipping.accept(record(args=(n,)), f"bad {n}")
    assert shipping.pending == 2
