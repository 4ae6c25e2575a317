"""The worker's sensor: Faust's Prometheus metrics, kept cheaply on the hot paths.

Faust calls its sensor several times for every message: when it arrives, when each agent's
stream takes it and lets it go, when it is acknowledged, and for every message produced
(changelog records included). Faust's own Prometheus sensor looks up each labelled metric on
every call (``labels(...)``, for the stream label with a regular expression) and the base
monitor keeps a per-event dict; together they cost a bare agent a quarter of its rate.
:class:`ShopMonitor` keeps the same metrics under the
same names with the labelled children looked up once, and the bookkeeping Faust itself reads
(``stream_inbound_time`` for its livelock check, the counters of its ``/stats``).

``shop_store_*`` gauges report what the worker's RocksDB stores hold in memory, read when
``/metrics`` is scraped (:class:`StoreMemoryCollector`; runtime/store_memory.py).

``shop_http_latency`` records each web request's latency in ms (Faust's own sensor records
the time since the request's end, about 0).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from time import monotonic
from typing import Any, cast

from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP, AppT, CollectionT, EventT, Message, StreamT
from faust.types.transports import ProducerT
from faust.types.tuples import PendingMessage, RecordMetadata
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime.store_memory import current_memory

__all__ = ["ShopMonitor", "StoreMemoryCollector"]

#: Paths that operators' tools poll, which do not make a worker busy.
OPERATIONS_PATHS = frozenset({"/health", "/ready", "/metrics", "/metrics/"})

#: Each gauge of the stores' memory: its name, its help and the figure it reports.
STORE_GAUGES = (
    ("shop_store_databases", "RocksDB databases (table partitions) open in this worker",
     "stores"),
    ("shop_store_memtables_bytes", "Bytes in the memtables of all stores "
     "(rocksdb.cur-size-all-mem-tables, summed)", "memtables"),
    ("shop_store_table_readers_bytes", "Bytes of SST readers held outside the block cache "
     "(rocksdb.estimate-table-readers-mem, summed)", "table_readers"),
    ("shop_store_block_cache_bytes", "Bytes used in the block cache the stores share "
     "(memtables charged to it included)", "block_cache"),
    ("shop_store_block_cache_pinned_bytes", "Bytes pinned in the shared block cache",
     "block_cache_pinned"),
    ("shop_store_write_buffers_bytes", "Bytes the shared write-buffer budget counts",
     "write_buffers"),
    ("shop_store_released", "1 while the worker is idle and its stores' memory is given back "
     "(SHOP_STORE_IDLE_RELEASE)", "released"),
)


class StoreMemoryCollector(Collector):
    """The ``shop_store_*`` gauges, read from the stores when scraped (none before a store
    is opened)."""

    def collect(self) -> Any:
        """Yield one gauge per figure of the stores' memory."""
        memory = current_memory()
        if memory is None:
            return
        figures = memory.figures()
        for name, help_text, field in STORE_GAUGES:
            yield GaugeMetricFamily(name, help_text, value=getattr(figures, field))


_store_collector: StoreMemoryCollector | None = None


def register_store_collector() -> None:
    """Serve the ``shop_store_*`` gauges in the default registry (``/metrics``), once."""
    global _store_collector
    if _store_collector is None:
        _store_collector = StoreMemoryCollector()
        REGISTRY.register(_store_collector)


class ShopMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor with the labelled metrics looked up once; the same metrics."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        register_store_collector()
        self._status_counters: dict[int, tuple[HTTPStatus, Any]] = {}
        self._table_reads: dict[str, Any] = {}
        self._table_writes: dict[str, Any] = {}
        self._topic_in: dict[str, Any] = {}
        self._tp_in: dict[TP, Any] = {}
        self._stream_events: dict[int, tuple[str, Any]] = {}
        self._topic_out: dict[str, Any] = {}
        #: Requests answered other than health checks and scrapes (agents/store_memory.py).
        self.shop_requests = 0

    # -- messages and streams (every message, every agent) ---------------------------------

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Count a message before it is handed to the streams."""
        self.messages_received_total += 1
        self.messages_active += 1
        self.messages_received_by_topic[tp.topic] += 1
        self.tp_read_offsets[tp] = offset
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        _child(self._topic_in, tp.topic, lambda: metrics.messages_received_per_topics.labels(
            topic=tp.topic)).inc()
        _child(self._tp_in, tp, lambda: metrics.messages_received_per_topics_partition.labels(
            topic=tp.topic, partition=tp.partition)).set(offset)

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT,
                           event: EventT) -> dict[str, Any] | None:
        """Count an event an agent's stream takes; return when it took it."""
        now = monotonic()
        self.events_total += 1
        self.events_active += 1
        self.stream_inbound_time[tp] = now
        known = self._stream_events.get(id(stream))
        if known is None:
            label = f"stream.{self._stream_label(stream)}.events"
            known = self._stream_events[id(stream)] = (
                str(stream), self._metrics.total_events_per_stream.labels(stream=label))
        self.events_by_stream[known[0]] += 1
        known[1].inc()
        self._metrics.total_events.inc()
        self._metrics.total_active_events.inc()
        return {"time_in": now}

    def on_stream_event_out(self, tp: TP, offset: int, stream: StreamT, event: EventT,
                            state: dict[str, Any] | None = None) -> None:
        """Observe how long the stream held the event."""
        self._metrics.total_active_events.dec()
        if state is not None:
            self.events_active -= 1
            took = monotonic() - state["time_in"]
            self.events_runtime.append(took)
            self._metrics.events_runtime_latency.observe(took * 1000.0)

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Count a message every stream has acknowledged."""
        self.messages_active -= 1
        self._metrics.active_messages.dec()

    def on_send_initiated(self, producer: ProducerT, topic: str, message: PendingMessage,
                          keysize: int, valsize: int) -> Any:
        """Count a message put into the producer's buffer; return when."""
        self.messages_sent += 1
        self.messages_sent_by_topic[topic] += 1
        _child(self._topic_out, topic, lambda: self._metrics.topic_messages_sent.labels(
            topic=f"topic.{topic}")).inc()
        return monotonic()

    def on_send_completed(self, producer: ProducerT, state: Any,
                          metadata: RecordMetadata) -> None:
        """Observe how long a message took to be acknowledged by the broker."""
        latency = monotonic() - cast(float, state)
        self.send_latency.append(latency)
        self._metrics.total_sent_messages.inc()
        self._metrics.producer_send_latency.observe(latency * 1000.0)

    # -- tables -----------------------------------------------------------------------------

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        """Count a read of ``table`` (a view's keyed read counts two or three)."""
        known = self._table_reads.get(table.name)
        if known is None:
            known = self._table_reads[table.name] = (
                self._table_or_create(table), self._metrics.table_operations.labels(
                    table=f"table.{table.name}", operation=self.KEYS_RETRIEVED))
        known[0].keys_retrieved += 1
        known[1].inc()

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        """Count a write of ``table``."""
        self._table_or_create(table).keys_updated += 1
        _child(self._table_writes, table.name, lambda: self._metrics.table_operations.labels(
            table=f"table.{table.name}", operation=self.KEYS_UPDATED)).inc()

    # -- web requests -----------------------------------------------------------------------

    def on_web_request_start(self, app: AppT, request: Any, *,
                             view: Any = None) -> Any:
        """Return when the request started."""
        return monotonic()

    def on_web_request_end(self, app: AppT, request: Any, response: Any, state: Any, *,
                           view: Any = None) -> None:
        """Count the answer's status and observe its latency."""
        latency = monotonic() - cast(float, state)
        if getattr(request, "path", None) not in OPERATIONS_PATHS:
            self.shop_requests += 1
        status = response.status if response is not None else 500
        known = self._status_counters.get(status)
        if known is None:
            code = HTTPStatus(status)
            known = self._status_counters[status] = (
                code, self._metrics.http_status_codes.labels(status_code=code))
        self.http_response_latency.append(latency)
        self.http_response_codes[known[0]] += 1
        known[1].inc()
        self._metrics.http_latency.observe(latency * 1000.0)


def _child(children: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """Return ``children[key]``, made with ``make()`` the first time."""
    child = children.get(key)
    if child is None:
        child = children[key] = make()
    return child
