"""The RocksDB stores of a worker share one block cache and one write-buffer budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from runtime.monitor import StoreMemoryCollector
from runtime.store_memory import MB, ShopRocksDBOptions, StoreMemory, shared_memory


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
