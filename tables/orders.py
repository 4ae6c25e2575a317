"""Orders tables, and waiting for an order to change on the worker that owns it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from app import app

__all__ = ["OpenOrderIndex", "OrderWatchers", "open_index", "open_orders", "orders",
           "orders_by_user", "watchers"]

#: order id -> models.orders.Order row (the API's order document plus saga bookkeeping)
orders = app.Table("orders", key_type=str, help="Every order with its status history.")

#: order id -> ISO time by which the order must be paid; only orders with work pending (still
#: placed or reserved, or their payment waiting for the provider: agents.orders.work_pending)
open_orders = app.Table("open-orders", key_type=str,
                        help="Orders waiting for stock, payment or the provider, with their "
                             "deadline.")


#: user id -> {user_id, orders: [{id, placed_at, total_cents}]} (the newest INDEX_LIMIT)
orders_by_user = app.Table("orders-by-user", key_type=str,
                           help="Each customer's orders, newest last.")


class OpenOrderIndex:
    """This worker's open orders in memory: deadline and last change (ISO times) by order id.

    The chase and the expiry look at every open order every second or so; reading the
    ``open-orders`` table and each order's row for that cost a saturated worker a tenth of
    its time. The orders agent notes each change here as it writes the tables, and after a
    rebalance (new partitions, restored rows) the index is rebuilt from the tables once.
    """

    def __init__(self, open_rows: Callable[[], Iterable[tuple[str, str]]],
                 order_row: Callable[[str], dict[str, Any] | None]) -> None:
        self.orders: dict[str, tuple[str, str]] = {}
        self._open_rows = open_rows
        self._order_row = order_row
        self._built_for: int | None = None
        #: No open order is due before this time (None: unknown, look).
        self._next_due: str | None = None
        #: The earliest deadline noted since the last look began (it may be missed by it).
        self._noted_due: str | None = None

    def note(self, order_id: str, deadline: str, last_change: str) -> None:
        """Remember an open order's deadline and when it last changed."""
        self.orders[order_id] = (deadline, last_change)
        if self._next_due is not None and deadline < self._next_due:
            self._next_due = deadline
        if self._noted_due is None or deadline < self._noted_due:
            self._noted_due = deadline

    def may_be_due(self, generation: int, now: str) -> bool:
        """Return True if an open order may be past its deadline at ``now``: then the caller
        looks at every open order and calls :meth:`look_again_at`. False spares the expiry
        a look at every open order every second."""
        self.current(generation)
        if self._next_due is not None and self._next_due > now:
            return False
        self._noted_due = None
        return True

    def look_again_at(self, when: str | None) -> None:
        """After a look: no open order it saw is due before ``when`` (None: none is open)."""
        candidates = [t for t in (when, self._noted_due) if t is not None]
        self._next_due = min(candidates) if candidates else "9999"  # none open: a note lowers it

    def drop(self, order_id: str) -> None:
        """Forget an order that is no longer open."""
        self.orders.pop(order_id, None)

    def current(self, generation: int) -> dict[str, tuple[str, str]]:
        """Return the index, rebuilt from the tables if the worker rebalanced since."""
        if generation != self._built_for:
            self.orders = {}
            for order_id, deadline in list(self._open_rows()):
                row = self._order_row(order_id)
                if row is not None:
                    self.orders[order_id] = (deadline, row["history"][-1]["at"])
            self._built_for = generation
            self._next_due = None
        return self.orders


class OrderWatchers:
    """Requests waiting for an order to change (``?wait=N``), woken by the orders agent."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)

    def watch(self, order_id: str) -> asyncio.Future[dict[str, Any]]:
        """Return a future that gets the order's row at its next change."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[order_id].append(future)
        return future

    def forget(self, order_id: str, future: asyncio.Future[dict[str, Any]]) -> None:
        """Stop waiting (the request timed out or went away)."""
        waiting = self._waiting.get(order_id)
        if waiting and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiting[order_id]

    def changed(self, order_id: str, row: dict[str, Any]) -> None:
        """Wake the requests waiting for ``order_id``."""
        for future in self._waiting.pop(order_id, ()):
            if not future.done():
                future.set_result(row)


watchers = OrderWatchers()
open_index = OpenOrderIndex(open_orders.items, orders.get)
