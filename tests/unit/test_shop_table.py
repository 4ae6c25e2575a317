"""runtime/tables.py: tables store str keys as raw UTF-8, the same bytes the topics carry."""

from __future__ import annotations

from typing import Any

from agents.topics import analytics_topic, dead_letters_topic
from app import app
from runtime.tables import RawStrKeys, ShopTable
from tables.analytics import public_view, session_activity


def test_the_app_builds_every_table_as_a_shop_table() -> None:
    assert isinstance(session_activity, ShopTable)
    # Global tables (the catalog) too: every table keys str as raw UTF-8.
    assert all(isinstance(table, RawStrKeys) for table in app.tables.values())


def test_a_str_key_is_stored_as_the_raw_bytes_a_producer_sends() -> None:
    changelog = session_activity.changelog_topic
    assert session_activity.key_serializer == "raw"
    assert changelog.key_serializer == analytics_topic.key_serializer == "raw"
    key, _ = changelog.prepare_key("sess-0001", None)
    assert key == b"sess-0001", "a JSON key (b'\"sess-0001\"') would be routed to another worker"


def test_other_key_types_keep_faust_serializers() -> None:
    assert session_activity._serializer_from_type(bytes) == "raw"
    assert session_activity._serializer_from_type(int) == "json"


def test_the_dead_letters_topic_is_keyed_by_the_raw_source_topic() -> None:
    assert dead_letters_topic.key_serializer == "raw"
    assert dead_letters_topic.get_topic_name() == "dead-letters"


def test_public_view_hides_bookkeeping_fields() -> None:
    row = {"events": 2, "_applied": {"ids": ["e1"]}, "session_id": "s"}
    assert public_view(row) == {"events": 2, "session_id": "s"}


def test_a_rocksdb_table_collects_garbage_only_when_it_closes_a_partition(
        monkeypatch: Any) -> None:
    import gc

    from faust.types import TP

    from runtime.tables import ShopRocksDBStore

    store = session_activity._new_store_by_url("rocksdb://")
    assert isinstance(store, ShopRocksDBStore)
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    changelog = session_activity.changelog_topic.get_topic_name()
    store._dbs.update({0: object(), 1: object()})
    store.revoke_partitions(session_activity, {TP("orders-changelog", 0)})  # not this table's
    store.revoke_partitions(session_activity, set())  # a rebalance that takes nothing away
    assert collections == [] and set(store._dbs) == {0, 1}
    store.revoke_partitions(session_activity, {TP(changelog, 1)})
    assert collections == [1] and set(store._dbs) == {0}


class _CountingStore:
    """The parts of a table's RocksDB store that ``get`` uses, counting the reads."""

    def __init__(self, rows: dict[bytes, bytes]) -> None:
        self.rows = rows
        self.reads = 0

    def _get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.rows.get(key)


def _table_on(monkeypatch: Any, rows: dict[bytes, bytes]) -> tuple[Any, _CountingStore]:
    """Return session_activity reading ``rows`` through a counting store (no broker)."""
    import faust

    from runtime import tables as base
    from runtime.tables import READ_CACHE_SIZE, ReadCache

    store = session_activity._new_store_by_url("rocksdb://")
    counting = _CountingStore(rows)
    monkeypatch.setattr(store, "_get", counting._get)
    monkeypatch.setattr(session_activity, "_data", store)
    monkeypatch.setattr(session_activity, "_read_cache", ReadCache(READ_CACHE_SIZE))
    # Writes and changelog batches as Faust does them, minus the broker.
    monkeypatch.setattr(faust.Table, "on_key_set", lambda self, key, value: None)
    monkeypatch.setattr(faust.Table, "on_key_del", lambda self, key: None)
    monkeypatch.setattr(faust.Table, "apply_changelog_batch", lambda self, batch: None)
    monkeypatch.setattr(base, "current_event", lambda: None)
    return session_activity, counting


def test_a_read_outside_an_event_is_remembered_as_bytes(monkeypatch: Any) -> None:
    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    first = table.get("s1")
    first["events"] = 99  # a reader changing its copy changes no one else's
    assert table.get("s1") == {"events": 1}
    assert store.reads == 1
    assert table.get("nobody", "none") == "none" and table.get("nobody") is None
    assert store.reads == 2, "a missing key is remembered too (a revocation check per request)"


def test_a_write_or_delete_here_forgets_the_remembered_read(monkeypatch: Any) -> None:
    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    assert table.get("s1") == {"events": 1}
    table.on_key_set("s1", {"events": 2})
    store.rows[b"s1"] = b'{"events": 2}'
    assert table.get("s1") == {"events": 2}
    table.on_key_del("s1")
    del store.rows[b"s1"]
    assert table.get("s1") is None
    assert store.reads == 3


def test_changelog_records_rebalances_and_resets_forget_every_read(monkeypatch: Any) -> None:
    import asyncio

    import faust

    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    table.get("s1")
    store.rows[b"s1"] = b'{"events": 5}'  # another worker's write, arriving as a record
    table.apply_changelog_batch([])
    assert table.get("s1") == {"events": 5}

    async def no_rebalance(self: Any, *args: Any) -> None:
        return None

    monkeypatch.setattr(faust.Table, "on_rebalance", no_rebalance)
    store.rows[b"s1"] = b'{"events": 6}'  # a partition recovered after a rebalance
    asyncio.run(table.on_rebalance(set(), set(), set()))
    assert table.get("s1") == {"events": 6}
    monkeypatch.setattr(faust.Table, "reset_state", lambda self: None)
    store.rows[b"s1"] = b'{"events": 7}'
    table.reset_state()
    assert table.get("s1") == {"events": 7}
    assert store.reads == 4


def test_reads_within_an_agents_event_always_read_the_store(monkeypatch: Any) -> None:
    from runtime import tables as base

    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    monkeypatch.setattr(base, "current_event", lambda: object())
    table.get("s1")
    table.get("s1")
    assert store.reads == 2  # the event's partition decides what is visible: no cache


def test_the_read_cache_forgets_the_oldest_key_first() -> None:
    from runtime.tables import _UNKNOWN, ReadCache

    cache = ReadCache(2)
    cache.put("a", b"1")
    cache.put("b", None)
    cache.put("a", b"2")  # a known key is replaced where it is: "a" is still the oldest
    cache.put("c", b"3")
    assert cache.get("a") is _UNKNOWN
    assert cache.get("b") is None and cache.get("c") == b"3" and len(cache) == 2
    cache.forget("c")
    assert cache.get("c") is _UNKNOWN
    cache.clear()
    assert len(cache) == 0


def _events(row: dict[str, Any] | None) -> tuple[int, ...] | None:
    _made.append(row)
    return None if row is None else (row["events"],)


_made: list[dict[str, Any] | None] = []


def test_a_derived_value_is_made_once_per_stored_version_of_the_row(monkeypatch: Any) -> None:
    from runtime.tables import derived

    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    _made.clear()
    assert derived(table, "s1", _events) == (1,) and derived(table, "s1", _events) == (1,)
    assert derived(table, "nobody", _events) is None
    assert derived(table, "nobody", _events) is None
    assert _made == [{"events": 1}, None] and store.reads == 2
    assert table.get("s1") == {"events": 1} and store.reads == 2, "one remembered read"
    table.on_key_set("s1", {"events": 2})  # a write here
    store.rows[b"s1"] = b'{"events": 2}'
    assert derived(table, "s1", _events) == (2,)
    store.rows[b"s1"] = b'{"events": 3}'  # a changelog record
    table.apply_changelog_batch([])
    assert derived(table, "s1", _events) == (3,)
    assert _made[2:] == [{"events": 2}, {"events": 3}]


def test_a_derived_value_within_an_event_is_made_from_the_store(monkeypatch: Any) -> None:
    from runtime import tables as base
    from runtime.tables import derived

    table, store = _table_on(monkeypatch, {b"s1": b'{"events": 1}'})
    monkeypatch.setattr(base, "current_event", lambda: object())
    _made.clear()
    assert derived(table, "s1", _events) == (1,) and derived(table, "s1", _events) == (1,)
    assert store.reads == 2 and len(_made) == 2


def test_a_derived_value_is_forgotten_with_its_key() -> None:
    from runtime.tables import ReadCache

    cache = ReadCache(1)
    cache.put("a", b"1")
    cache.derived("a")[_events] = (1,)
    cache.put("a", b"2")  # a new version of the row
    assert cache.derived("a") == {}
    cache.derived("a")[_events] = (2,)
    cache.put("b", b"3")  # "a" is the oldest: forgotten, with what was derived from it
    assert cache._derived == {}
