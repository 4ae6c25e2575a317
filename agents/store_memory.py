"""An idle worker gives its stores' memory back (see ``runtime/store_memory.py``).

Every few seconds the worker compares its count of table writes and of the shop's HTTP
requests with the last one (not table reads: timers read tables every second, the support
board's among them). Once it has not moved for ``SHOP_STORE_IDLE_RELEASE`` seconds, the
stores' memtables are flushed, the shared block cache shrinks and the heap's free pages go
back to the system. The first tick that sees a write or a request again gives the cache its
size back. While the worker is busy, the heap's free pages go back to the system every
``TRIM_EVERY_S`` seconds (glibc keeps what is freed in holes of its arena otherwise, and a busy
worker's RSS grew with it).
"""

from __future__ import annotations

import asyncio
import logging
import time

from app import app
from runtime.store_memory import HeapTrim, IdleRelease, Turn, current_memory, return_free_heap

__all__ = ["release_when_idle", "shop_activity"]

log = logging.getLogger(__name__)

#: How often the worker looks whether it is idle, in seconds.
IDLE_CHECK_S = 2.0

_idle = IdleRelease(app.settings.store_idle_release)
_trim = HeapTrim()


def shop_activity() -> int:
    """Return how many table writes and shop requests this worker has made and answered
    since it started (health checks and scrapes of /metrics are not the shop's)."""
    monitor = app.monitor
    # counted by the app's monitor (runtime/monitor.py), 0 under Faust's own
    requests: int = getattr(monitor, "shop_requests", 0)
    return requests + sum(table.keys_updated for table in list(monitor.tables.values()))


@app.timer(interval=IDLE_CHECK_S)
async def release_when_idle() -> None:
    """Release the stores' memory when the worker went idle, restore it when it is busy, and
    trim the heap every ``TRIM_EVERY_S`` seconds while it is busy."""
    memory = current_memory()
    if memory is None:  # no RocksDB store opened (memory:// tables)
        return
    now = time.monotonic()
    turn = _idle.tick(now, shop_activity())
    loop = asyncio.get_running_loop()
    if turn is Turn.RESTORE:
        memory.restore()
    elif turn is None and not _idle.released and _trim.due(now):
        await loop.run_in_executor(None, return_free_heap)
    elif turn is Turn.RELEASE:
        flushed = await loop.run_in_executor(None, memory.release)
        log.info("idle for %.0f s: %d stores flushed, block cache shrunk, free heap returned",
                 _idle.after, flushed)
