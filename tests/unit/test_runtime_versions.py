"""runtime/ patches Faust, mode and aiokafka: the installed versions are those the patches were
checked against, and every private attribute or method they reach into still exists
(runtime/README.md lists each patch)."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from typing import Any

import pytest

#: The versions every patch of runtime/ was read against.
CHECKED_AGAINST = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

#: The patches that depend on each library's internals.
PATCHES = {
    "faust-streaming": "runtime/app.py, transport.py, consumer.py, rebalance.py, "
                       "tansu_compat.py, worker.py, tables.py, changelog.py, store_memory.py, "
                       "routing.py, monitor.py, web.py, streams.py",
    "mode-streaming": "runtime/worker.py (the worker's start-up), consumer.py (its thread's "
                      "call_thread), transport.py (Service.task)",
    "aiokafka": "runtime/tansu_compat.py (_fetch_max_wait_ms), routing.py (the producer's "
                "_metadata), consumer.py (seek in the consumer's thread), changelog.py "
                "(create_batch/send_batch), transport.py (the request timeout of the "
                "producer's connections; its waiting batches)",
}

#: (patch, class, attribute or method it reaches into) for every such part of a library.
REACHED = [
    ("runtime/app.py", "faust.App", "_new_transport"),
    ("runtime/app.py", "faust.App", "_new_web"),
    ("runtime/app.py", "faust.App", "_consumer_wait_empty"),
    ("runtime/app.py", "faust.App", "_update_assignment"),
    ("runtime/app.py", "faust.App", "_assignment"),
    ("runtime/app.py", "faust.App", "_on_autodiscovery_error"),
    ("runtime/app.py", "faust.App", "table_route"),
    ("runtime/transport.py", "faust.transport.producer.ProducerBuffer", "pending"),
    ("runtime/transport.py", "faust.transport.producer.ProducerBuffer", "message_sent"),
    ("runtime/transport.py", "faust.transport.producer.ProducerBuffer", "_send_pending"),
    ("runtime/transport.py", "faust.transport.producer.ProducerBuffer", "_handle_pending"),
    ("runtime/transport.py", "faust.transport.producer.ProducerBuffer", "__post_init__"),
    ("runtime/transport.py", "faust.transport.drivers.aiokafka.Producer", "buffer"),
    ("runtime/transport.py", "faust.transport.drivers.aiokafka.Producer", "threaded_producer"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_read_offset"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_committed_offset"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_acked"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_acked_index"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_gap"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_unacked_messages"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_new_offset"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_add_gap"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_commit_offsets"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_is_changelog_tp"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "_thread"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "seek_to_committed"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "perform_seek"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.Consumer", "resume_flow"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
     "_ensure_consumer"),
    ("runtime/consumer.py", "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
     "call_thread"),
    ("runtime/consumer.py", "faust.App", "in_recovery"),
    ("runtime/rebalance.py", "faust.transport.consumer.Consumer", "unacked"),
    ("runtime/rebalance.py", "faust.transport.consumer.Consumer",
     "commit_and_end_transactions"),
    ("runtime/tansu_compat.py", "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
     "_create_worker_consumer"),
    ("runtime/tansu_compat.py", "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
     "_highwaters"),
    ("runtime/tansu_compat.py", "faust.transport.drivers.aiokafka.Consumer",
     "_new_consumer_thread"),
    ("runtime/tansu_compat.py", "aiokafka.AIOKafkaConsumer", "_fetch_max_wait_ms"),
    ("runtime/worker.py", "faust.Worker", "on_setup_root_logger"),
    ("runtime/worker.py", "faust.Worker", "on_startup_finished"),
    ("runtime/worker.py", "faust.Worker", "_sentinel_task"),
    ("runtime/tables.py", "faust.Table", "_serializer_from_type"),
    ("runtime/tables.py", "faust.Table", "_new_store_by_url"),
    ("runtime/tables.py", "faust.Table", "apply_changelog_batch"),
    ("runtime/tables.py", "faust.Table", "send_changelog"),
    ("runtime/tables.py", "faust.Table", "on_key_set"),
    ("runtime/tables.py", "faust.Table", "on_key_del"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "_dbs"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "rocksdb_options"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "use_rocksdict"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "_get"),
    ("runtime/tables.py", "faust.stores.base.SerializedStore", "_encode_key"),
    ("runtime/tables.py", "faust.stores.base.SerializedStore", "_decode_value"),
    ("runtime/tables.py", "faust.stores.base.SerializedStore", "_encode_value"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "_set"),
    ("runtime/tables.py", "faust.stores.rocksdb.Store", "_del"),
    ("runtime/changelog.py", "faust.stores.rocksdb.Store", "set_persisted_offset"),
    ("runtime/changelog.py", "aiokafka.AIOKafkaProducer", "create_batch"),
    ("runtime/changelog.py", "aiokafka.AIOKafkaProducer", "send_batch"),
    ("runtime/tables.py", "faust.tables.recovery.Recovery", "completed"),
    ("runtime/tables.py", "faust.tables.manager.TableManager", "_update_channels"),
    ("runtime/tables.py", "faust.tables.manager.TableManager", "recovery"),
    ("runtime/store_memory.py", "faust.stores.rocksdb.RocksDBOptions", "as_options"),
    ("runtime/store_memory.py", "faust.stores.rocksdb.RocksDBOptions", "open"),
    ("runtime/routing.py", "faust.app.router.Router", "_get_table"),
    ("runtime/routing.py", "faust.app.router.Router", "_get_table_topic"),
    ("runtime/routing.py", "faust.app.router.Router", "_assignor"),
    ("runtime/routing.py", "faust.app.router.Router", "_urlident"),
    ("runtime/routing.py", "faust.assignor.PartitionAssignor", "_tps_url"),
    ("runtime/routing.py", "faust.transport.drivers.aiokafka.Producer", "_ensure_producer"),
    ("runtime/transport.py", "faust.transport.drivers.aiokafka.Producer", "_ensure_producer"),
    ("runtime/routing.py", "aiokafka.AIOKafkaProducer", "_metadata"),
    ("runtime/transport.py", "faust.transport.drivers.aiokafka.Producer", "_new_producer"),
    ("runtime/transport.py", "faust.transport.drivers.aiokafka.Producer", "_producer"),
    ("runtime/transport.py", "aiokafka.AIOKafkaProducer", "client"),
    ("runtime/transport.py", "aiokafka.AIOKafkaProducer", "_sender"),
    ("runtime/transport.py", "aiokafka.AIOKafkaProducer", "_message_accumulator"),
    ("runtime/transport.py", "aiokafka.AIOKafkaClient", "_request_timeout_ms"),
    ("runtime/transport.py", "aiokafka.producer.sender.Sender", "_request_timeout_ms"),
    ("runtime/transport.py", "aiokafka.producer.sender.Sender", "_in_flight"),
    ("runtime/transport.py", "aiokafka.producer.message_accumulator.MessageAccumulator",
     "_batches"),
    ("runtime/transport.py", "aiokafka.producer.message_accumulator.MessageBatch", "_ctime"),
    ("runtime/monitor.py", "faust.sensors.prometheus.PrometheusMonitor", "_metrics"),
    ("runtime/monitor.py", "faust.sensors.prometheus.PrometheusMonitor", "_table_or_create"),
    ("runtime/monitor.py", "faust.sensors.prometheus.PrometheusMonitor", "_stream_label"),
    ("runtime/monitor.py", "faust.sensors.prometheus.PrometheusMonitor",
     "stream_inbound_time"),
    ("runtime/web.py", "faust.web.drivers.aiohttp.Web", "_wrap_into_asyncdef"),
    ("runtime/web.py", "faust.web.drivers.aiohttp.Web", "cors"),
    ("runtime/streams.py", "faust.Stream", "_active_agens"),
    ("runtime/streams.py", "faust.Stream", "_enable_passive"),
    ("runtime/streams.py", "faust.Stream", "_processors"),
    ("runtime/streams.py", "faust.Stream", "add_processor"),
    ("runtime/streams.py", "faust.Stream", "enable_acks"),
    ("runtime/streams.py", "faust.Stream", "current_event"),
    ("runtime/streams.py", "faust.Stream", "ack"),
    ("runtime/streams.py", "faust.Stream", "take_events"),
]


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def has_attribute(cls: type, name: str) -> bool:
    """Return True if ``cls`` has ``name``: on the class, annotated, or set on ``self`` by
    one of its classes (instance attributes exist only once an object is made)."""
    if hasattr(cls, name):
        return True
    assigned = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=[^=]")
    for base in cls.__mro__:
        if name in getattr(base, "__annotations__", {}):
            return True
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        if assigned.search(source):
            return True
    return False


@pytest.mark.parametrize("library", sorted(CHECKED_AGAINST))
def test_the_installed_library_is_the_version_the_patches_were_checked_against(
        library: str) -> None:
    installed = importlib.metadata.version(library)
    assert installed == CHECKED_AGAINST[library], (
        f"{library} {installed} is installed, but the patches of {PATCHES[library]} were "
        f"checked against {library} {CHECKED_AGAINST[library]}: read each of them against "
        f"the new version (runtime/README.md), then update CHECKED_AGAINST here")


@pytest.mark.parametrize(("patch", "owner", "name"), REACHED,
                         ids=[f"{owner.rpartition('.')[2]}.{name}" for _, owner, name in REACHED])
def test_what_each_patch_reaches_into_still_exists(patch: str, owner: str, name: str) -> None:
    cls: Any = _class(owner)
    assert has_attribute(cls, name), (
        f"{patch} reaches into {owner}.{name}, which the installed version no longer has: "
        f"the patch must be read against it again (runtime/README.md)")


def test_the_shop_table_manager_starts_as_faust_s_does_but_for_its_sleep() -> None:
    """ShopTableManager.on_start is Faust's without the sleep: if Faust's does more, so must
    the shop's."""
    from faust.tables.manager import TableManager

    from runtime.tables import ShopTableManager

    def statements(method: Any) -> list[str]:
        lines = inspect.getsource(method).splitlines()[1:]  # without the def line
        return [line.strip() for line in lines
                if line.strip() and not line.strip().startswith(('"""', "#"))]

    assert statements(TableManager.on_start) == [
        "await self.sleep(1.0)", *statements(ShopTableManager.on_start)]


def test_the_check_sees_a_missing_attribute() -> None:
    import faust

    assert not has_attribute(faust.App, "_no_such_attribute_here")
    assert has_attribute(_class("faust.stores.rocksdb.Store"), "_dbs")  # set in __init__
