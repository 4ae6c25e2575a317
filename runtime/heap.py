"""The worker's heap: what lives as long as the worker is kept out of full collections.

A started worker holds ~130,000 container objects (Faust, aiokafka, aiohttp, the tables and
views). CPython's full collection walks every one of them, tens of milliseconds with the
event loop standing still, which shows in the p99 of a busy worker's requests. Nearly all of
those objects live as long as the worker, so once it is ready they are frozen
(``gc.freeze``): full collections then walk only what came after.

Frozen objects are still freed by reference counting; only garbage *cycles* among them wait.
The one place that relies on the cycle collector, a revoked partition's RocksDB handle that
must be released before the partition can be opened again, thaws first (:func:`collect_all`),
and the worker freezes its heap again once it is ready after the rebalance
(``agents/heap.py``).
"""

from __future__ import annotations

import gc

from prometheus_client import Gauge

__all__ = ["FROZEN", "collect_all", "freeze"]

FROZEN = Gauge("shop_gc_frozen_objects",
               "Objects kept out of the garbage collector's full collections (gc.freeze)")


def freeze() -> int:
    """Collect, then move every object left to the permanent generation; return how many."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    FROZEN.set(frozen)
    return frozen


def collect_all() -> int:
    """Thaw the frozen objects and run a full collection; return how many were unreachable."""
    gc.unfreeze()
    FROZEN.set(0)
    return gc.collect()
