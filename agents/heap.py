"""Freezing the worker's long-lived heap once it is ready (see ``runtime/heap.py``).

Frozen when the tables are recovered and no rebalance is under way, and again after every
rebalance (a rebalance that closed a partition thawed the heap to release its handles; one
that did not leaves the objects made since for the next freeze to take).
"""

from __future__ import annotations

import logging

from app import app
from runtime import heap
from runtime.tables import tables_ready

__all__ = ["freeze_when_ready"]

log = logging.getLogger(__name__)

#: How often the worker looks whether its heap is to be frozen, in seconds.
FREEZE_CHECK_S = 2.0

#: The rebalance count at the last freeze (-1: not frozen yet).
_frozen_at = -1


@app.timer(interval=FREEZE_CHECK_S)
async def freeze_when_ready() -> None:
    """Freeze the heap once after start-up and once after each rebalance, when ready."""
    global _frozen_at
    if _frozen_at == app.rebalancing_count or not tables_ready(app):
        return
    _frozen_at = app.rebalancing_count
    log.info("heap: %d long-lived objects frozen (full collections skip them)", heap.freeze())
