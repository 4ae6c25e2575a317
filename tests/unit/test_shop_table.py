"""tables/base.py: tables store str keys as raw UTF-8, the same bytes the topics carry."""

from __future__ import annotations

from typing import Any

from agents.topics import analytics_topic, dead_letters_topic
from app import app
from tables.analytics import public_view, session_activity
from tables.base import RawStrKeys, ShopTable


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

    from tables.base import ShopRocksDBStore

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
