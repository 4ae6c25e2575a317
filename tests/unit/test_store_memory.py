"""The RocksDB stores of a worker share one block cache and one write-buffer budget."""

from __future__ import annotations

import itertools
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from runtime.monitor import StoreMemoryCollector
from runtime.store_memory import (
    HEAP_ARENAS,
    MB,
    RELEASED_CACHE_BYTES,
    HeapTrim,
    IdleRelease,
    ShopRocksDBOptions,
    StoreMemory,
    Turn,
    shared_memory,
)


class _Store:
    """What the budget reads of a Faust store: its open databases."""

    def __init__(self, dbs: list[Any]) -> None:
        self._dbs = dict(enumerate(dbs))


_kept: list[_Store] = []  # the budget holds stores weakly


def _fill(memory: StoreMemory, tmp_path: Path, stores: int, rows: int) -> list[Any]:
    options = ShopRocksDBOptions(memory)
    dbs = [options.open(tmp_path / f"store-{n}") for n in range(stores)]
    _kept.append(_Store(dbs))
    memory.add_store(_kept[-1])
    for n in range(rows):
        dbs[n % stores].put(b"key-%d" % n, b"x" * 200)
    return dbs


def test_the_memtables_of_all_stores_stay_within_the_shared_budget(tmp_path: Path) -> None:
    memory = StoreMemory(8 * MB, 2 * MB, MB // 4)
    dbs = _fill(memory, tmp_path, stores=6, rows=60_000)  # ~13 MB written
    figures = memory.figures()
    assert figures.stores == 6
    # the budget flushes a written store once all memtables hold more than it
    assert figures.memtables < 2 * MB + 6 * 2 * MB // 4
    assert figures.write_buffers <= 3 * MB
    assert all(db[b"key-%d" % n] == b"x" * 200 for n, db in ((7, dbs[1]), (59_999, dbs[5])))


def test_the_stores_share_one_cache_counting_the_memtables(tmp_path: Path) -> None:
    memory = StoreMemory(8 * MB, 2 * MB, MB // 4)
    _fill(memory, tmp_path, stores=2, rows=2_000)
    figures = memory.figures()
    assert figures.block_cache >= figures.write_buffers > 0


def test_a_store_reopened_has_its_unflushed_writes_back(tmp_path: Path) -> None:
    memory = StoreMemory(8 * MB, 4 * MB, MB)
    db = ShopRocksDBOptions(memory).open(tmp_path / "store")
    db.put(b"order-1", b"placed")
    db.close()  # the write is only in the memtable and the WAL
    again = ShopRocksDBOptions(memory).open(tmp_path / "store")
    assert again[b"order-1"] == b"placed"


def test_release_flushes_every_memtable_and_shrinks_the_cache_until_restored(
        tmp_path: Path) -> None:
    memory = StoreMemory(16 * MB, 8 * MB, MB)
    dbs = _fill(memory, tmp_path, stores=3, rows=40_000)
    for n in range(40_000):  # reads fill the cache with data blocks once flushed
        assert dbs[n % 3][b"key-%d" % n] == b"x" * 200
    assert memory.figures().memtables > 0 and not memory.released

    assert memory.release() == 3
    figures = memory.figures()
    assert memory.released
    # each store keeps an empty memtable (the budget counts the flushed ones off a moment later)
    assert figures.memtables < 64 * 1024
    assert figures.block_cache <= RELEASED_CACHE_BYTES + MB  # a few pinned blocks
    assert all(db[b"key-%d" % n] == b"x" * 200 for n, db in ((7, dbs[1]), (39_998, dbs[2])))

    memory.restore()
    assert not memory.released
    for n in range(40_000):
        dbs[n % 3].get(b"key-%d" % n)
    assert memory.figures().block_cache > RELEASED_CACHE_BYTES + MB


def test_idle_release_after_the_quiet_time_and_restore_at_the_next_activity() -> None:
    idle = IdleRelease(after=30.0)
    assert idle.tick(0.0, 5) is None
    assert idle.tick(29.0, 5) is None
    assert idle.tick(30.0, 5) is Turn.RELEASE
    assert idle.tick(60.0, 5) is None  # released once
    assert idle.tick(62.0, 6) is Turn.RESTORE
    assert idle.tick(64.0, 6) is None
    assert idle.tick(94.0, 6) is Turn.RELEASE


def test_idle_release_never_releases_when_switched_off() -> None:
    idle = IdleRelease(after=0.0)
    assert all(idle.tick(float(t), 1) is None for t in range(0, 100_000, 1000))


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=60))
def test_idle_release_alternates_and_only_releases_after_a_quiet_spell(
        steps: list[tuple[float, bool]]) -> None:
    idle = IdleRelease(after=30.0)
    now, activity, quiet_since = 0.0, 0, 0.0
    turns = [idle.tick(now, activity)]
    for gap, busy in steps:
        now += gap
        activity += busy
        turn = idle.tick(now, activity)
        if busy:
            quiet_since = now
            assert turn is not Turn.RELEASE
        if turn is Turn.RELEASE:
            assert now - quiet_since >= 30.0
        turns.append(turn)
    moves = [turn for turn in turns if turn is not None]
    # release, restore, release, ...: never twice the same way
    assert all(a is not b for a, b in itertools.pairwise(moves))
    assert not moves or moves[0] is Turn.RELEASE


def test_the_process_keeps_one_budget_for_the_same_sizes() -> None:
    assert shared_memory(8 * MB, 2 * MB, MB) is shared_memory(8 * MB, 2 * MB, MB)
    assert shared_memory(8 * MB, 2 * MB, MB).sizes == (8 * MB, 2 * MB, MB)


def test_metrics_report_the_stores_figures(tmp_path: Path, monkeypatch: Any) -> None:
    memory = StoreMemory(8 * MB, 2 * MB, MB // 4)
    _fill(memory, tmp_path, stores=3, rows=3_000)
    monkeypatch.setattr("runtime.monitor.current_memory", lambda: memory)
    registry = CollectorRegistry()
    registry.register(StoreMemoryCollector())
    text = generate_latest(registry).decode()
    assert "shop_store_databases 3.0" in text
    for name in ("memtables", "block_cache", "write_buffers", "table_readers"):
        assert f"shop_store_{name}_bytes " in text


_COUNT_ARENAS = """
import ctypes, sys, threading
from runtime.store_memory import limit_heap_arenas
if sys.argv[1] == "capped":
    assert limit_heap_arenas()
all_allocated = threading.Barrier(8)
def allocate():
    kept = [bytes(1000 + n) for n in range(200)]  # over 512 bytes: malloc, not pymalloc
    all_allocated.wait()  # an exited thread's arena would be handed to the next thread
    del kept
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
print(open(sys.argv[2]).read().count("<heap nr="))
"""


def _arenas_after_threads(capped: bool, tmp_path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_ARENAS, "capped" if capped else "free",
         str(tmp_path / f"malloc-{capped}.xml")],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc arenas are glibc's")
def test_the_arena_cap_holds_threads_to_two_heaps(tmp_path: Path) -> None:
    """A worker caps its arenas before its threads start (runtime/app.py): eight threads that
    allocate then share two heaps, where each would have one of its own."""
    assert _arenas_after_threads(False, tmp_path) > HEAP_ARENAS
    assert _arenas_after_threads(True, tmp_path) <= HEAP_ARENAS


def test_the_heap_is_trimmed_every_period_and_never_when_switched_off() -> None:
    trim = HeapTrim(every=60.0)
    assert [trim.due(t) for t in (100.0, 130.0, 159.9, 160.0, 200.0, 220.0)] == [
        False, False, False, True, False, True]
    off = HeapTrim(every=0.0)
    assert not any(off.due(t) for t in range(0, 10_000, 60))


@given(st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=60))
def test_two_trims_are_a_period_apart_at_least(steps: list[float]) -> None:
    trim = HeapTrim(every=60.0)
    now, trims = 0.0, []
    for step in steps:
        now += step
        if trim.due(now):
            trims.append(now)
    assert all(later - earlier >= 60.0 for earlier, later in itertools.pairwise(trims))


_HOLES = """
import ctypes, sys
from runtime.store_memory import return_free_heap
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
chunks = [libc.malloc(16 * 1024) for _ in range(4000)]  # 64 MB in the main arena
for chunk in chunks:
    ctypes.memset(chunk, 1, 16 * 1024)
for n, chunk in enumerate(chunks):
    if n % 8:  # a chunk in use every 128 KB: the heap cannot shrink from its top
        libc.free(chunk)
before = rss_kb()
return_free_heap()
print(before, rss_kb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_returning_the_free_heap_gives_back_the_holes_between_chunks_in_use() -> None:
    done = subprocess.run([sys.executable, "-c", _HOLES], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[2])
    before, after = (int(kb) for kb in done.stdout.split())
    assert before - after > 40 * 1024  # of the 56 MB freed in 112 KB holes
