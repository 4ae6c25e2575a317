"""The memory budget of a worker's RocksDB stores: one cache and one write-buffer budget that
every store (one per table partition) shares.

Faust opens each table partition as a RocksDB database of its own, each with its own 2 GiB
block cache and up to three 64 MB memtables; a worker of this app holds about 120 of them.
Under steady traffic those memtables rarely fill, so nothing is flushed: the writes pile up in
memory (and in the write-ahead logs) store after store, and the worker's RSS grows for as long
as it runs. :class:`StoreMemory` gives every store of the worker:

* one LRU block cache of ``SHOP_STORE_MEMORY_MB``, data, index and filter blocks alike (the
  index and filter blocks would otherwise sit outside any cache, per open SST file);
* one write-buffer budget of ``SHOP_STORE_WRITE_BUFFERS_MB`` (RocksDB's WriteBufferManager),
  charged to that cache, so the memtables and the cached blocks together stay near the
  cache's size: once all memtables hold more than the budget, a store that is written flushes
  its memtable to an SST file;
* small memtables of ``SHOP_STORE_WRITE_BUFFER_MB`` (two at most per store), so a store that
  is written rarely holds little, and a flush writes a small file.

The write-ahead log stays on: a store's unflushed writes are in its WAL and are replayed when
the store is opened again, as before; flushing sooner only makes the WALs shorter.

A worker that has seen no table read or write for ``SHOP_STORE_IDLE_RELEASE`` seconds gives
that memory back (:meth:`StoreMemory.release`, decided by :class:`IdleRelease`): it flushes
every memtable, shrinks the cache to :data:`RELEASED_CACHE_BYTES` and hands the heap's free
pages back to the system (glibc keeps freed memory in its arenas otherwise, so RSS would not
fall). The next read or write restores the cache's size (:meth:`StoreMemory.restore`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import weakref
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

__all__ = ["MB", "TRIM_EVERY_S", "Figures", "HeapTrim", "IdleRelease", "ShopRocksDBOptions",
           "StoreMemory", "Turn", "limit_heap_arenas", "return_free_heap", "shared_memory"]

log = logging.getLogger(__name__)

MB = 1024 * 1024

#: What the block cache keeps while the worker is idle: room for the stores' pinned index and
#: filter blocks of a few SST files, not their data.
RELEASED_CACHE_BYTES = 4 * MB

#: glibc's mallopt parameter for the number of malloc arenas.
M_ARENA_MAX = -8
#: Arenas the worker's threads share. glibc's default, 8 per core, lets each RocksDB and
#: executor thread keep an arena of its own whose freed memory is rarely reused elsewhere.
HEAP_ARENAS = 2

#: Seconds between two returns of the heap's free pages while the worker is busy. Under steady
#: traffic the memory glibc kept freed in its main arena grew from 3.6 to 16.5 MB over the last
#: three and a half minutes of a ten-minute soak (~0.06 MB/s) while the memory in use stayed
#: flat: the freed chunks sit in holes below chunks in use, and the RSS grew with them.
TRIM_EVERY_S = 60.0

#: Memtables a store may hold: the one being written and one being flushed.
MEMTABLES_PER_STORE = 2

#: The RocksDB property of a store that :meth:`StoreMemory.figures` sums over the stores.
MEMTABLES_PROPERTY = "rocksdb.cur-size-all-mem-tables"
TABLE_READERS_PROPERTY = "rocksdb.estimate-table-readers-mem"


@dataclass(frozen=True, slots=True)
class Figures:
    """What the stores of this worker hold in memory, in bytes."""

    stores: int
    memtables: int
    table_readers: int
    block_cache: int
    block_cache_pinned: int
    write_buffers: int
    released: int = 0  # 1 while an idle worker's memory is given back


class StoreMemory:
    """The block cache and write-buffer budget shared by the stores of one worker, and the
    stores that use them (held weakly: a closed table's store is not kept alive)."""

    def __init__(self, cache_bytes: int, write_buffers_bytes: int,
                 write_buffer_bytes: int) -> None:
        self.cache_bytes = cache_bytes
        self.write_buffers_bytes = write_buffers_bytes
        self.write_buffer_bytes = write_buffer_bytes
        self.cache = rocksdict.Cache(cache_bytes)
        # No stall: a write over the budget flushes its store instead of waiting.
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            write_buffers_bytes, False, self.cache)
        self._stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self._released = False
        limit_heap_arenas()

    @property
    def sizes(self) -> tuple[int, int, int]:
        """Return the cache, budget and memtable sizes this budget was made with."""
        return self.cache_bytes, self.write_buffers_bytes, self.write_buffer_bytes

    def add_store(self, store: Any) -> None:
        """Count ``store`` (a Faust RocksDB store: its ``_dbs`` are its open databases)."""
        self._stores.add(store)

    def apply(self, options: rocksdict.Options, bloom_bits: int) -> None:
        """Make ``options`` use this budget: small memtables, the shared cache and budget."""
        options.set_write_buffer_size(self.write_buffer_bytes)
        options.set_max_write_buffer_number(MEMTABLES_PER_STORE)
        options.set_write_buffer_manager(self.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(bloom_bits, block_based=True)
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)

    @property
    def released(self) -> bool:
        """Whether the cache is shrunk for an idle worker (:meth:`release`)."""
        return self._released

    def databases(self) -> list[rocksdict.Rdict]:
        """Return the open databases of the stores on this budget."""
        return [db for store in list(self._stores) for db in list(store._dbs.values())]

    def release(self) -> int:
        """Give an idle worker's store memory back: flush every memtable to its SST file,
        shrink the cache to :data:`RELEASED_CACHE_BYTES` and return the heap's free pages to
        the system. Return how many databases were flushed.

        Blocking (one flush per database): run it in an executor thread.
        """
        flushed = 0
        for db in self.databases():
            try:
                db.flush()
                flushed += 1
            except Exception:  # closed by a rebalance meanwhile: nothing of it is kept
                continue
        self.cache.set_capacity(min(self.cache_bytes, RELEASED_CACHE_BYTES))
        self._released = True
        return_free_heap()
        return flushed

    def restore(self) -> None:
        """Give the cache its size back (the worker is busy again)."""
        self.cache.set_capacity(self.cache_bytes)
        self._released = False

    def figures(self) -> Figures:
        """Return what the stores hold now: memtables summed over the open databases, the
        shared cache's and budget's own usage."""
        databases = self.databases()
        return Figures(
            stores=len(databases),
            memtables=sum(_property(db, MEMTABLES_PROPERTY) for db in databases),
            table_readers=sum(_property(db, TABLE_READERS_PROPERTY) for db in databases),
            block_cache=self.cache.get_usage(),
            block_cache_pinned=self.cache.get_pinned_usage(),
            write_buffers=self.write_buffers.get_usage(),
            released=int(self._released),
        )


class Turn(Enum):
    """What :class:`IdleRelease` asks of the stores' memory."""

    RELEASE = "release"
    RESTORE = "restore"


class IdleRelease:
    """Decide when an idle worker gives its store memory back, and when it takes it again.

    ``tick(now, activity)`` is called every few seconds with a count that grows with every
    table read and write. The memory is released once the count has not moved for
    ``after`` seconds (never if ``after`` is 0), and restored at the first tick that sees
    it move again.
    """

    def __init__(self, after: float) -> None:
        self.after = after
        self.released = False
        self._activity: int | None = None
        self._quiet_since = 0.0

    def tick(self, now: float, activity: int) -> Turn | None:
        """Return what to do now, given the activity count at ``now`` (seconds)."""
        if activity != self._activity:
            self._activity = activity
            self._quiet_since = now
            if self.released:
                self.released = False
                return Turn.RESTORE
            return None
        if self.after > 0 and not self.released and now - self._quiet_since >= self.after:
            self.released = True
            return Turn.RELEASE
        return None


class HeapTrim:
    """Decide when a busy worker hands the heap's free pages back (:func:`return_free_heap`):
    every ``every`` seconds (never if 0), the first time a full period after the first call.
    An idle worker's release returns them too (:meth:`StoreMemory.release`)."""

    def __init__(self, every: float = TRIM_EVERY_S) -> None:
        self.every = every
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """Return whether to trim the heap now (``now`` in seconds)."""
        if self.every <= 0:
            return False
        if self._last is None:
            self._last = now
            return False
        if now - self._last < self.every:
            return False
        self._last = now
        return True


def _glibc() -> Any:
    """Return glibc, or None on a C library without malloc_trim and mallopt (musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 -- both or neither
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def limit_heap_arenas(arenas: int = HEAP_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for the threads made from now on (RocksDB's
    are made when the first store opens). Return whether the C library took it."""
    return bool(_libc is not None and _libc.mallopt(M_ARENA_MAX, arenas) == 1)


def return_free_heap() -> bool:
    """Hand the free pages of every malloc arena back to the system. Return whether any
    memory was returned (False too where the C library cannot)."""
    return bool(_libc is not None and _libc.malloc_trim(0) == 1)


def _property(db: rocksdict.Rdict, name: str) -> int:
    try:
        return db.property_int_value(name) or 0
    except Exception:  # a database closed while being read: it holds nothing any more
        return 0


_shared: StoreMemory | None = None


def shared_memory(cache_bytes: int, write_buffers_bytes: int,
                  write_buffer_bytes: int) -> StoreMemory:
    """Return this process's budget, made on first use (a new one if the sizes differ: tests
    build apps with settings of their own)."""
    global _shared
    sizes = (cache_bytes, write_buffers_bytes, write_buffer_bytes)
    if _shared is None or _shared.sizes != sizes:
        _shared = StoreMemory(*sizes)
    return _shared


def current_memory() -> StoreMemory | None:
    """Return this process's budget, if a store was opened with one."""
    return _shared


class ShopRocksDBOptions(RocksDBOptions):
    """Faust's options of one RocksDB store, on the worker's shared budget."""

    def __init__(self, memory: StoreMemory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.memory = memory

    def as_options(self) -> rocksdict.Options:
        """Return Faust's options with the shared cache and write-buffer budget."""
        options = super().as_options()
        if self.use_rocksdict:
            self.memory.apply(options, self.bloom_filter_size)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        """Open the database at ``path`` with one set of options (Faust builds two, and the
        one it gives the database lacks the path settings it made the first for)."""
        if not self.use_rocksdict:
            return super().open(path, read_only=read_only)
        options = self.as_options()
        options.set_db_paths([rocksdict.DBPath(str(path), self.target_file_size_base)])
        access = (rocksdict.AccessType.read_write() if self.ttl is None
                  else rocksdict.AccessType.with_ttl(self.ttl))
        db = rocksdict.Rdict(str(path), options=options, access_type=access)
        db.set_read_options(rocksdict.ReadOptions())
        return db
