"""The worker's sensor keeps Faust's Prometheus metrics (runtime/monitor.py)."""

from __future__ import annotations

from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, cast

from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from runtime.monitor import ShopMonitor


def monitor_and_registry() -> tuple[ShopMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    return ShopMonitor(metrics=FaustMetrics.create(registry, "t")), registry


def test_statuses_latencies_and_table_operations_are_counted() -> None:
    monitor, registry = monitor_and_registry()
    app: Any = None
    for status in (200, 200, 404):
        state = monitor.on_web_request_start(app, None)
        monitor.on_web_request_end(app, None, SimpleNamespace(status=status), state)
    monitor.on_web_request_end(app, None, None, monitor.on_web_request_start(app, None))
    sample = registry.get_sample_value
    assert sample("t_http_status_codes_total", {"status_code": "200"}) == 2
    assert sample("t_http_status_codes_total", {"status_code": "404"}) == 1
    assert sample("t_http_status_codes_total", {"status_code": "500"}) == 1
    assert sample("t_http_latency_count") == 4
    assert 0 <= cast(float, sample("t_http_latency_sum")) < 1000
    assert monitor.http_response_codes[HTTPStatus.OK] == 2
    assert len(monitor.http_response_latency) == 4
    table: Any = SimpleNamespace(name="orders")
    for _ in range(3):
        monitor.on_table_get(table, "key")
    monitor.on_table_set(table, "key", b"row")
    assert sample("t_table_operations_total",
                  {"table": "table.orders", "operation": "keys_retrieved"}) == 3
    assert sample("t_table_operations_total",
                  {"table": "table.orders", "operation": "keys_updated"}) == 1
    assert monitor.tables["orders"].keys_retrieved == 3
    assert monitor.tables["orders"].keys_updated == 1


def test_messages_events_and_sends_are_counted_per_topic_and_stream() -> None:
    monitor, registry = monitor_and_registry()
    sample = registry.get_sample_value
    tp = TP("orders", 3)
    streams: list[Any] = [SimpleNamespace(shortlabel=f"Stream: agents.orders.{name}")
                          for name in ("saga", "by_user")]
    for offset in (10, 11):
        message: Any = SimpleNamespace()
        monitor.on_message_in(tp, offset, message)
        for stream in streams:
            state = monitor.on_stream_event_in(tp, offset, stream, cast(Any, None))
            monitor.on_stream_event_out(tp, offset, stream, cast(Any, None), state)
        monitor.on_message_out(tp, offset, message)
    assert sample("t_messages_received_total") == 2
    assert sample("t_messages_received_per_topic_total", {"topic": "orders"}) == 2
    assert sample("t_messages_received_per_topics_partition",
                  {"topic": "orders", "partition": "3"}) == 11
    assert sample("t_active_messages") == 0
    assert sample("t_total_events_total") == 4
    assert sample("t_total_active_events") == 0
    assert sample("t_total_events_per_stream_total",
                  {"stream": "stream.agents.orders.saga.events"}) == 2
    assert sample("t_events_runtime_ms_count") == 4
    assert monitor.events_total == 4 and monitor.events_active == 0
    assert tp in monitor.stream_inbound_time  # Faust's livelock check reads it
    state = monitor.on_send_initiated(cast(Any, None), "payments", cast(Any, None), 1, 2)
    monitor.on_send_completed(cast(Any, None), state, cast(Any, None))
    assert sample("t_topic_messages_sent_total", {"topic": "topic.payments"}) == 1
    assert sample("t_total_sent_messages_total") == 1
    assert monitor.messages_sent_by_topic["payments"] == 1
