"""The table class every ShopStream table uses: string keys as raw UTF-8, like the topics,
kept in RocksDB without a garbage collection per table and rebalance.

Faust serializes a table's ``str`` keys as JSON by default (``"abc"`` with quotes), while the
topics carry raw ``abc``. ``app.table_route`` hashes the changelog's key form to find the
worker that owns a key, so with JSON keys it asks the wrong worker. One key form everywhere
keeps the producer's partition, the row's partition and the routed worker the same.

Faust's RocksDB store runs a full ``gc.collect()`` in every table's ``revoke_partitions`` (to
drop the handles of the partitions it closes), also when the table gives nothing up, and
again in every table's ``stop``. With two dozen tables that is two dozen full collections in
every rebalance, 1-2.5 s on this machine, inside the time the group allows a member to
rejoin; and as many again at every shutdown. :class:`ShopRocksDBStore` collects only when a
table really closed a partition (a handle is released by reference counting as soon as the
store forgets it; the collection is for the rare cycle, and thaws the heap frozen at start-up:
``runtime/heap.py``), and not at all on stop.

A global table's changelog is read by every worker, the writer included, so the writer applies
its own earlier records after its newer local writes: its copy briefly goes back in time (an
admin's deleted promotion code was redeemable again a moment after the DELETE answered 200).
:class:`ShopGlobalTable` does not apply a changelog record that is older than this worker's
own latest write of the same key (:class:`OwnWrites`).

Faust's table manager sleeps a second as it starts, so that a table declared while the app
starts can still register; every shop table is declared when the worker discovers the layers,
before the app starts. :class:`ShopTableManager` starts without the sleep: a worker is ready
a second sooner, at start and after every restart (a table declared too late still fails, with
Faust's "Too late to add tables").

Every store of a worker shares one block cache and one write-buffer budget
(``runtime/store_memory.py``), sized by the ``SHOP_STORE_*`` settings.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, cast

import faust
from faust.stores.base import SerializedStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, AppT, CodecArg, CollectionT, EventT, ModelArg
from faust.types.stores import StoreT
from faust.types.tuples import FutureMessage
from yarl import URL

from config.settings import Settings
from runtime import heap
from runtime.changelog import ChangelogBatches
from runtime.positions import GLOBAL_TOPICS, positions
from runtime.store_memory import MB, ShopRocksDBOptions, StoreMemory, shared_memory

__all__ = ["BulkChangelog", "OwnWrites", "ReadCache", "ShopGlobalTable", "ShopRocksDBStore",
           "ShopTable", "ShopTableManager", "derived", "note_source_offsets", "tables_ready"]

R = TypeVar("R")  # what OwnWrites holds back: a changelog event
D = TypeVar("D")  # what a view derives from a row (derived)


class ShopRocksDBStore(RocksDBStore):
    """Faust's RocksDB store, on the worker's shared memory budget, collecting garbage only
    when a partition was really closed."""

    def __init__(self, url: str | URL, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.memory = store_memory(app)
        self.rocksdb_options = ShopRocksDBOptions(self.memory, **(self.options or {}),
                                                  use_rocksdict=self.use_rocksdict)
        self.memory.add_store(self)

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        """Forget the revoked partitions' databases (closed once nothing refers to them)."""
        closed = False
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                closed |= self._dbs.pop(tp.partition, None) is not None
        if closed:
            self.logger.info("closed %s partitions %s", table.name,
                             sorted(tp.partition for tp in tps))
            heap.collect_all()

    async def stop(self) -> None:
        """Forget every database (closed as the worker exits; no collection needed)."""
        self._dbs.clear()


def store_memory(app: AppT) -> StoreMemory:
    """Return the memory budget of ``app``'s stores, sized by its settings (the defaults for
    an app without the shop's settings)."""
    settings: Settings = getattr(app, "settings", None) or Settings()
    return shared_memory(int(settings.store_memory_mb * MB),
                         int(settings.store_write_buffers_mb * MB),
                         int(settings.store_write_buffer_mb * MB))


class RawStrKeys:
    """Serialize ``str`` keys as raw UTF-8 bytes (mixed into Faust's table classes), and keep
    RocksDB tables in :class:`ShopRocksDBStore`."""

    def _serializer_from_type(self, typ: ModelArg | None) -> CodecArg | None:
        if typ is str:
            return "raw"
        return super()._serializer_from_type(typ)  # type: ignore[misc]

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)  # type: ignore[misc]
        table: Any = self
        return ShopRocksDBStore(url, table.app, table, table_name=table.name,
                                key_type=table.key_type, key_serializer=table.key_serializer,
                                value_serializer=table.value_serializer,
                                value_type=table.value_type, loop=table.loop,
                                options=table.options)


#: How many rows each table remembers for reads outside an agent's event.
READ_CACHE_SIZE = 4096

_UNKNOWN = object()  # what ReadCache.get returns for a key it does not remember


class ReadCache:
    """The stored bytes of recently read keys (``None``: no row), the oldest forgotten first,
    and what readers derived from them (:func:`derived`).

    Bytes, not decoded rows: every reader of ``get`` still gets a row of its own to change.
    A derived value is dropped with its key's bytes (replaced, forgotten or cleared).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: dict[Any, bytes | None] = {}
        self._derived: dict[Any, dict[Callable[[Any], Any], Any]] = {}

    def get(self, key: Any) -> Any:
        """Return the remembered bytes of ``key`` (or None: no row), else ``_UNKNOWN``."""
        return self._rows.get(key, _UNKNOWN)

    def put(self, key: Any, value: bytes | None) -> None:
        """Remember what the store holds for ``key``."""
        rows = self._rows
        if len(rows) >= self.size and key not in rows:
            oldest = next(iter(rows))
            del rows[oldest]
            self._derived.pop(oldest, None)
        rows[key] = value
        self._derived.pop(key, None)

    def derived(self, key: Any) -> dict[Callable[[Any], Any], Any]:
        """Return what was derived from ``key``'s remembered bytes, by function (a known
        key's: ``put`` first)."""
        found = self._derived.get(key)
        if found is None:
            found = self._derived[key] = {}
        return found

    def forget(self, key: Any) -> None:
        """Forget ``key`` (it is being written or deleted)."""
        self._rows.pop(key, None)
        self._derived.pop(key, None)

    def clear(self) -> None:
        """Forget everything (the store changed under us: changelog, rebalance, reset)."""
        self._rows.clear()
        self._derived.clear()

    def __len__(self) -> int:
        return len(self._rows)


class FastReads:
    """``get`` with one store read, and rows read outside an agent's event remembered
    (mixed into Faust's table classes).

    Faust's ``Table.get`` asks the store whether it holds the key, then reads it: two
    RocksDB look-ups, each through Faust's key index and bloom check, under ``Mapping.get``
    and two dict layers. Here ``get`` does one store read (``_get``: within an agent's event,
    the event's partition only; elsewhere, any partition held here), the same sensor call and
    the same decoding.

    Reads outside an event (HTTP views, timers) are served from a :class:`ReadCache` of the
    stored bytes: an authenticated keyed GET read two rows, and each RocksDB read cost it
    about as much as the rest of the view. The cache forgets a key when this worker writes or
    deletes it (``on_key_set``/``on_key_del``: every write of a table goes through them, a
    ``clear()`` too), and everything when the store changes otherwise: a changelog batch
    (recovery, standby replicas, a global table's records from other workers), a rebalance,
    a reset. Reads within an event, windowed tables and tables with a ``default`` factory are
    not cached.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_cache = ReadCache(READ_CACHE_SIZE)

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` if the table has none."""
        table: Any = self
        store = table.data
        if table.default is not None or not isinstance(store, SerializedStore):
            return super().get(key, default)  # type: ignore[misc]
        table.on_key_get(key)
        if current_event() is None and table.window is None:
            value = self._cached_bytes(key)
        else:
            value = store._get(store._encode_key(key))
        return default if value is None else store._decode_value(value)

    def _cached_bytes(self, key: Any) -> bytes | None:
        """Return the stored bytes of ``key`` (None: no row) through the read cache."""
        value = self._read_cache.get(key)
        if value is _UNKNOWN:
            store: Any = cast(Any, self).data
            value = store._get(store._encode_key(key))
            self._read_cache.put(key, value)
        return cast(bytes | None, value)

    def derive(self, key: Any, make: Callable[[Any], D]) -> D:
        """Return ``make(row)`` (``row`` None without one), made once per stored version of
        the row outside events; see :func:`derived`."""
        table: Any = self
        store = table.data
        if (table.default is not None or not isinstance(store, SerializedStore)
                or table.window is not None or current_event() is not None):
            return make(self.get(key))
        table.on_key_get(key)
        value = self._cached_bytes(key)
        made = self._read_cache.derived(key)
        try:
            return cast(D, made[make])
        except KeyError:
            result = made[make] = make(None if value is None else store._decode_value(value))
            return result

    def on_key_set(self, key: Any, value: Any) -> None:
        """Forget the remembered read of ``key``; then write it as Faust does."""
        self._read_cache.forget(key)
        super().on_key_set(key, value)  # type: ignore[misc]

    def on_key_del(self, key: Any) -> None:
        """Forget the remembered read of ``key``; then delete it as Faust does."""
        self._read_cache.forget(key)
        super().on_key_del(key)  # type: ignore[misc]

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        """Apply changelog records as Faust does, forgetting every remembered read."""
        self._read_cache.clear()
        super().apply_changelog_batch(batch)  # type: ignore[misc]

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP],
                           newly_assigned: set[TP], generation_id: int = 0) -> None:
        """Forget every remembered read (partitions come and go); then rebalance."""
        self._read_cache.clear()
        await super().on_rebalance(  # type: ignore[misc]
            assigned, revoked, newly_assigned, generation_id)
        self._read_cache.clear()

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Forget every remembered read once recovery completed."""
        self._read_cache.clear()
        await super().on_recovery_completed(active_tps, standby_tps)  # type: ignore[misc]

    def reset_state(self) -> None:
        """Forget every remembered read and reset the store."""
        self._read_cache.clear()
        super().reset_state()  # type: ignore[misc]


class BulkChangelog:
    """Table writes whose changelog records go to Kafka in bulk (mixed into Faust's Table).

    A write encodes its row once, stores those bytes, and hands the same bytes as the
    changelog record to the producer's :class:`runtime.changelog.ChangelogBatches`, which
    sends a changelog partition's records as one batch and delivers them all before Faust
    commits a source offset. As Faust's own write, it goes to the current event's partition,
    and is counted by the sensor. Windowed tables, tables with their own partitioner and
    stores that do not keep bytes write as Faust does.
    """

    _batches: ChangelogBatches | bool | None = False  # False: not looked up yet
    _changelog_name = ""

    def _changelog_batches(self) -> ChangelogBatches | None:
        batches = self._batches
        if batches is False:
            table: Any = self
            batches = None
            if (table.window is None and not table.use_partitioner
                    and isinstance(table.data, SerializedStore)):
                batches = getattr(table.app.producer, "changelog_batches", None)
                self._changelog_name = table.changelog_topic.get_topic_name()
            self._batches = batches
        return cast(ChangelogBatches | None, batches)

    def __setitem__(self, key: Any, value: Any) -> None:
        batches = self._changelog_batches()
        if batches is None:
            super().__setitem__(key, value)  # type: ignore[misc]
            return
        table: Any = self
        store = table.data
        raw_key, raw_value = store._encode_key(key), store._encode_value(value)
        self._write(batches, key, raw_key, raw_value)
        store._set(raw_key, raw_value)
        table._sensor_on_set(table, key, value)

    def __delitem__(self, key: Any) -> None:
        batches = self._changelog_batches()
        if batches is None:
            super().__delitem__(key)  # type: ignore[misc]
            return
        table: Any = self
        store = table.data
        raw_key = store._encode_key(key)
        self._write(batches, key, raw_key, None)
        store._del(raw_key)
        table._sensor_on_del(table, key)

    def _write(self, batches: ChangelogBatches, key: Any, raw_key: bytes,
               raw_value: bytes | None) -> None:
        table: Any = self
        event = current_event()
        if event is None:  # Faust's rule: a table changes only from an agent's event
            raise TypeError("Cannot modify table key from outside of stream iteration")
        table._read_cache.forget(key)
        batches.append(table.name, table.data, TP(self._changelog_name, event.message.partition),
                       raw_key, raw_value)


class ShopTable(BulkChangelog, FastReads, RawStrKeys, faust.Table):
    """A Faust table whose ``str`` keys are stored and routed as raw UTF-8 bytes, and whose
    changelog records go to Kafka in bulk."""


class OwnWrites(Generic[R]):
    """This worker's writes of a global table that its changelog has not brought back yet.

    Keys are the changelog's key bytes. A write is *in flight* until the broker gave it an
    offset, then *sent* at that offset until the changelog reaches it. A record of a key older
    than this worker's latest sent write of it is stale: applying it would put an older value
    over the newer one this worker already holds. While a write is in flight its offset is not
    known yet, so a record of its key is held back (the latest one) and decided when the
    offset arrives: applied if it came after the write, dropped if before.
    """

    def __init__(self) -> None:
        self._in_flight: Counter[bytes] = Counter()
        self._sent: dict[bytes, int] = {}
        self._held: dict[bytes, tuple[int, R]] = {}

    def written(self, key: bytes) -> None:
        """This worker wrote ``key`` and sent the change to the changelog."""
        self._in_flight[key] += 1

    def sent(self, key: bytes, offset: int | None) -> R | None:
        """The change of ``key`` is in the changelog at ``offset`` (None: the send failed);
        return a held-back record to apply now, if one came after this worker's writes."""
        self._in_flight[key] -= 1
        if offset is not None:
            self._sent[key] = max(offset, self._sent.get(key, -1))
        if self._in_flight[key] > 0:
            return None
        del self._in_flight[key]
        held = self._held.pop(key, None)
        if held is None:
            return None
        held_offset, record = held
        return record if self.admit(key, held_offset, record) else None

    def admit(self, key: bytes, offset: int, record: R) -> bool:
        """Return True if the changelog's ``record`` of ``key`` at ``offset`` is to be applied
        now: False if it is older than this worker's own latest write, or held back while a
        write of ``key`` is in flight."""
        if self._in_flight.get(key):
            self._held[key] = (offset, record)
            return False
        mine = self._sent.get(key)
        if mine is None:
            return True
        if offset <= mine:
            if offset == mine:
                del self._sent[key]  # this worker's latest write came back
            return False
        del self._sent[key]  # another worker wrote after this one
        return True


class ShopGlobalTable(FastReads, RawStrKeys, faust.GlobalTable):
    """A Faust global table (every worker has all of it) with raw UTF-8 ``str`` keys, whose
    writer does not apply its own older changelog records over its newer writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own_writes: OwnWrites[EventT] = OwnWrites()

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: CodecArg | None = None,
                       value_serializer: CodecArg | None = None) -> FutureMessage:
        """Send the change of ``key`` to the changelog and remember it until it comes back."""
        raw_key, _ = self.changelog_topic.prepare_key(key, key_serializer or self.key_serializer)
        self.own_writes.written(raw_key)
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)

        def landed(done: FutureMessage) -> None:
            ok = not done.cancelled() and done.exception() is None
            later = self.own_writes.sent(raw_key, done.result().offset if ok else None)
            if later is not None:
                super(ShopGlobalTable, self).apply_changelog_batch([later])

        fut.add_done_callback(landed)
        return fut

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        """Apply the changelog records that are not older than this worker's own writes,
        and advance the applied positions of the topics they came from."""
        batch = list(batch)
        fresh = [event for event in batch if event.message.key is None
                 or self.own_writes.admit(event.message.key, event.message.offset, event)]
        if fresh:
            super().apply_changelog_batch(fresh)
        if self.name in GLOBAL_TOPICS:  # the tables named after the global topics they keep
            for event in batch:
                note_source_offsets(self.name, event.message.value)


def derived(table: Any, key: Any, make: Callable[[Any], D]) -> D:
    """Return ``make(table.get(key))``, made once per stored version of the row where the
    table remembers reads (outside an agent's event; see :class:`FastReads`).

    A view's answer is a function of the row it shows: a keyed GET decoded the row and
    encoded the answer on every request, about a third of the view's own time. ``make``
    must be a module-level function of the row alone (it is the cache's key, so a new
    closure each call never hits), and what it returns is shared by every caller until the
    row changes: bytes, tuples, frozen data, never a dict to change. The read is counted in
    the table's metrics as a ``get`` is.
    """
    derive = getattr(table, "derive", None)
    if derive is None:
        return make(table.get(key))
    return cast(D, derive(key, make))


def note_source_offsets(table: str, value: bytes | None) -> None:
    """Advance the position of the global topic a global table's changelog row came from.

    A global table named after its topic is written by that topic's one agent, in the topic's
    order, and each row records the highest source offset it absorbed (the replay guard's
    ``_applied``, or a promotion's ``revision``): once a row's record is applied here, so is
    the topic up to that offset. A record held back or dropped as older than this worker's
    own write counts too: this worker already holds a newer state of its row.
    """
    if not value:
        return
    try:
        row = json.loads(value)
        offsets = (row.get("_applied") or {}).get("offsets") or {}
        offset = offsets.get(table, row.get("revision"))
    except (ValueError, AttributeError):
        return
    if isinstance(offset, int) and not isinstance(offset, bool):
        positions.handled(table, 0, offset)


class ShopTableManager(TableManager):
    """Faust's table manager, starting without Faust's one-second sleep (module docstring)."""

    async def on_start(self) -> None:
        """Register the tables' changelogs and start recovery at once."""
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def tables_ready(app: AppT) -> bool:
    """Return True once this worker's tables are recovered and no rebalance is under way."""
    recovery = cast(Recovery, app.tables.recovery)  # type: ignore[attr-defined]
    return recovery.completed.is_set() and not app.rebalancing
