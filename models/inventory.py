"""Inventory: stock per sku and the commands that change it, with its arithmetic as pure rules.

The inventory agent is the single writer of a sku's stock (the ``inventory`` topic is keyed by
sku). Holds are kept per order, so every command is idempotent by its state: reserving for an
order that already holds stock, releasing or committing a hold that is gone, change nothing.
Invariant: ``initial + restocked = available + reserved + sold``, nothing ever negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from models.base import Effect, Event, event_types
from models.catalog import StockLevelChanged, stock_level

__all__ = [
    "INVENTORY_EVENTS",
    "CommitStock",
    "ReleaseStock",
    "ReserveStock",
    "Restock",
    "ReturnStock",
    "Stock",
    "StockRejected",
    "StockReserved",
    "apply_inventory_event",
    "commit",
    "release",
    "reserve",
    "restock",
    "return_sold",
]


class ReserveStock(Event):
    """Hold ``quantity`` of ``sku`` for ``order_id`` (answered on the orders topic)."""

    event_type = "reserve_stock"
    sku: str
    order_id: str
    quantity: int


class ReleaseStock(Event):
    """Give back the stock held for ``order_id`` (rejected, failed, cancelled, expired)."""

    event_type = "release_stock"
    sku: str
    order_id: str


class CommitStock(Event):
    """Turn the stock held for ``order_id`` into sold stock (the order is paid)."""

    event_type = "commit_stock"
    sku: str
    order_id: str


class ReturnStock(Event):
    """Put ``quantity`` sold to ``order_id`` back on the shelf (a paid order was cancelled)."""

    event_type = "return_stock"
    sku: str
    order_id: str
    quantity: int


class Restock(Event):
    """Add ``quantity`` to the stock of ``sku``; ``initial`` for a new product's first stock."""

    event_type = "restock"
    sku: str
    quantity: int
    initial: bool = False


class StockReserved(Event):
    """The inventory holds ``quantity`` of ``sku`` for the order."""

    event_type = "stock_reserved"
    order_id: str
    sku: str
    quantity: int


class StockRejected(Event):
    """The inventory could not hold ``requested`` of ``sku`` (``available`` were left)."""

    event_type = "stock_rejected"
    order_id: str
    sku: str
    requested: int
    available: int


INVENTORY_EVENTS = event_types(ReserveStock, ReleaseStock, CommitStock, ReturnStock, Restock)


@dataclass(frozen=True, slots=True)
class Stock:
    """The stock of one sku: counts, and the holds and sales per order."""

    sku: str
    initial: int = 0
    restocked: int = 0
    available: int = 0
    reserved: int = 0
    sold: int = 0
    holds: Mapping[str, int] = field(default_factory=dict)
    returns: Mapping[str, int] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Return the table row for this stock."""
        return {"sku": self.sku, "initial": self.initial, "restocked": self.restocked,
                "available": self.available, "reserved": self.reserved, "sold": self.sold,
                "holds": dict(self.holds), "returns": dict(self.returns)}

    @classmethod
    def from_row(cls, sku: str, row: Mapping[str, Any] | None) -> Stock:
        """Return the stock stored in ``row`` (no row: an unknown sku with no stock)."""
        if not row:
            return cls(sku)
        return cls(sku, row["initial"], row["restocked"], row["available"], row["reserved"],
                   row["sold"], dict(row["holds"]), dict(row["returns"]))

    def public(self) -> dict[str, int | str]:
        """Return what the API shows: ``{sku, available, reserved, sold}``."""
        return {"sku": self.sku, "available": self.available, "reserved": self.reserved,
                "sold": self.sold}


def reserve(stock: Stock, order_id: str, quantity: int) -> tuple[Stock, bool]:
    """Hold ``quantity`` for ``order_id`` if available; return (stock, reserved?)."""
    if order_id in stock.holds:
        return stock, True  # asked again: the answer stands
    if quantity <= 0 or quantity > stock.available:
        return stock, False
    holds = {**stock.holds, order_id: quantity}
    return replace(stock, available=stock.available - quantity,
                   reserved=stock.reserved + quantity, holds=holds), True


def release(stock: Stock, order_id: str) -> Stock:
    """Give the hold of ``order_id`` back to available stock (none held: no change)."""
    quantity = stock.holds.get(order_id)
    if quantity is None:
        return stock
    holds = {k: v for k, v in stock.holds.items() if k != order_id}
    return replace(stock, available=stock.available + quantity,
                   reserved=stock.reserved - quantity, holds=holds)


def commit(stock: Stock, order_id: str) -> Stock:
    """Turn the hold of ``order_id`` into a sale (none held: no change)."""
    quantity = stock.holds.get(order_id)
    if quantity is None:
        return stock
    holds = {k: v for k, v in stock.holds.items() if k != order_id}
    return replace(stock, reserved=stock.reserved - quantity, sold=stock.sold + quantity,
                   holds=holds)


def return_sold(stock: Stock, order_id: str, quantity: int) -> Stock:
    """Put ``quantity`` sold to ``order_id`` back to available stock, once per order."""
    if order_id in stock.returns or quantity <= 0 or quantity > stock.sold:
        return stock
    return replace(stock, available=stock.available + quantity, sold=stock.sold - quantity,
                   returns={**stock.returns, order_id: quantity})


def restock(stock: Stock, quantity: int, *, initial: bool = False) -> Stock:
    """Add ``quantity`` (> 0) to available stock, counted as initial (once) or restocked."""
    if quantity <= 0:
        raise ValueError(f"a restock needs a positive quantity, got {quantity}")
    if initial and stock.initial:
        return stock  # a product's first stock is set once (seeding again changes nothing)
    if initial:
        return replace(stock, initial=stock.initial + quantity,
                       available=stock.available + quantity)
    return replace(stock, restocked=stock.restocked + quantity,
                   available=stock.available + quantity)


def apply_inventory_event(stock: Stock, event: Event) -> tuple[Stock, list[Effect]]:
    """Return the stock after ``event`` and what it causes (answers, stock level notices)."""
    effects: list[Effect] = []
    if isinstance(event, ReserveStock):
        after, ok = reserve(stock, event.order_id, event.quantity)
        answer: Event = (
            StockReserved.new(order_id=event.order_id, sku=stock.sku, quantity=event.quantity,
                              correlation_id=event.order_id)
            if ok else
            StockRejected.new(order_id=event.order_id, sku=stock.sku, requested=event.quantity,
                              available=stock.available, correlation_id=event.order_id)
        )
        effects.append(Effect("orders", event.order_id, answer))
    elif isinstance(event, ReleaseStock):
        after = release(stock, event.order_id)
    elif isinstance(event, CommitStock):
        after = commit(stock, event.order_id)
    elif isinstance(event, ReturnStock):
        after = return_sold(stock, event.order_id, event.quantity)
    elif isinstance(event, Restock):
        after = restock(stock, event.quantity, initial=event.initial)
    else:
        return stock, effects
    if isinstance(event, Restock) or stock_level(after.available) != stock_level(stock.available):
        effects.append(Effect("catalog", stock.sku, StockLevelChanged.new(
            sku=stock.sku, level=stock_level(after.available), available=after.available)))
    return after, effects
