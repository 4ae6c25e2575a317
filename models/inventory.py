"""Inventory: stock per sku and the commands that change it, with its arithmetic as pure rules.

The inventory agent is the single writer of a sku's stock (the ``inventory`` topic is keyed by
sku). A ledger per order makes every command idempotent by the order's state at the sku, in
any order of delivery: reserving for an order that holds or bought stock, releasing or
committing a hold that is gone, returning twice, change nothing (see :class:`Stock`).
Invariant: ``initial + restocked = available + reserved + sold``, nothing ever negative.

The ledger of a busy sku is long (every order of the last ``SHOP_ORDER_TTL``), so only its
recent part lives in the sku's row; finished orders move, by the time their order was placed,
into archive rows of ``LEDGER_BUCKET_S`` seconds each (see :func:`apply_inventory_event`).
A command's cost then follows the sku's recent orders, not all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from models.base import Effect, Event, event_types
from models.catalog import StockLevelChanged, stock_level

__all__ = [
    "INVENTORY_EVENTS",
    "LEDGER_ARCHIVE_OVER",
    "LEDGER_BUCKET_S",
    "LEDGER_KEEP_S",
    "ArchiveReader",
    "Bucket",
    "Change",
    "CommitStock",
    "Entry",
    "ReleaseStock",
    "ReserveStock",
    "Restock",
    "ReturnStock",
    "Stock",
    "StockRejected",
    "StockReserved",
    "apply_inventory_event",
    "archive_entries",
    "archive_row",
    "bucket_of",
    "commit",
    "prune",
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
    placed_at: int = 0  # the second the order was placed: its ledger bucket (0: not known)


class ReleaseStock(Event):
    """Give back the stock held for ``order_id`` (rejected, failed, cancelled, expired)."""

    event_type = "release_stock"
    sku: str
    order_id: str
    placed_at: int = 0  # the second the order was placed: its ledger bucket (0: not known)


class CommitStock(Event):
    """Turn the stock held for ``order_id`` into sold stock (the order is paid)."""

    event_type = "commit_stock"
    sku: str
    order_id: str
    placed_at: int = 0  # the second the order was placed: its ledger bucket (0: not known)


class ReturnStock(Event):
    """Put ``quantity`` sold to ``order_id`` back on the shelf (a paid order was cancelled)."""

    event_type = "return_stock"
    sku: str
    order_id: str
    quantity: int
    placed_at: int = 0  # the second the order was placed: its ledger bucket (0: not known)


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

#: How long (seconds of event time) the ledger keeps an order after its last command, unless
#: told otherwise: the default SHOP_ORDER_TTL.
LEDGER_KEEP_S = 900
#: Width (seconds of the orders' placing time) of one archive row of a sku's ledger.
LEDGER_BUCKET_S = 10
#: Finished entries a sku's row may keep past their bucket's closing before they go to
#: archive rows: a sku sold less than about this often per SHOP_ORDER_TTL keeps its whole
#: ledger in its row (short), and pays no archive writes.
LEDGER_ARCHIVE_OVER = 64


class Entry(NamedTuple):
    """What a sku's stock did for one order: ``quantity`` units in ``state``, last seen ``at``.

    ``at`` is the newest ``occurred_at`` (whole seconds) of the commands for the order that
    reached the sku; a pruned entry's late duplicate is told by it (see :class:`Stock`).
    ``placed`` is when the order was placed (0: not known), which files the entry in its
    archive row once the order is done here.

    A tuple, stored as it is (JSON writes it ``[quantity, state, at, placed]``): every command
    reads and writes the sku's recent ledger, and a frozen dataclass cost about 2 µs an entry
    each way, more than the JSON.
    """

    quantity: int
    state: str
    at: int
    placed: int = 0


class Bucket(NamedTuple):
    """An archive row of a sku's ledger as the sku's row knows it: its newest ``at``, and the
    units ``sold`` to its orders (less those whose entry the recent ledger overrides)."""

    at: int
    sold: int


#: Entry states: held (reserved) or rejected, then sold, released or returned; at most once
#: each.
HELD, REJECTED, SOLD, RELEASED, RETURNED = "held", "rejected", "sold", "released", "returned"
#: States in which an entry may be pruned once it is old enough (a hold never is).
PRUNABLE = frozenset({REJECTED, SOLD, RELEASED, RETURNED})

#: Reads the entries of one of a sku's archive rows (by bucket).
ArchiveReader = Callable[[int], Mapping[str, Entry]]


def bucket_of(placed: int) -> int:
    """Return the archive row (its first second) of an order placed at second ``placed``."""
    return placed - placed % LEDGER_BUCKET_S


@dataclass(frozen=True, slots=True)
class Stock:
    """The stock of one sku: its counts and the ledger of what it did for each order.

    The ledger makes every command idempotent by the order's state at this sku, whatever order
    Kafka delivers the commands in: an order's units are held once, then sold, released or
    returned at most once each (a reserve redelivered after its commit holds nothing, a
    return that overtakes its commit puts the held units back and the late commit sells
    nothing). An entry no longer held is pruned once ``keep`` seconds of event time have
    passed since its order's last command here; ``horizon`` is then the newest ``at`` pruned.
    A command for an order not in the ledger that occurred at or before the horizon is a late
    duplicate of a pruned order's and changes nothing.

    ``ledger`` is the recent part: holds, and finished orders placed in the last
    ``LEDGER_BUCKET_S`` seconds or two. The rest is in archive rows, one per ``bucket_of``
    the orders' placing time (``buckets``); an entry in ``ledger`` overrides the archive's.
    """

    sku: str
    initial: int = 0
    restocked: int = 0
    available: int = 0
    reserved: int = 0
    sold: int = 0
    ledger: Mapping[str, Entry] = field(default_factory=dict)
    horizon: int = 0
    seen: int = 0
    buckets: Mapping[int, Bucket] = field(default_factory=dict)

    @property
    def holds(self) -> dict[str, int]:
        """Return the units held per order."""
        return {o: e.quantity for o, e in self.ledger.items() if e.state == HELD}

    @property
    def returns(self) -> dict[str, int]:
        """Return the units returned per order (those in the recent ledger)."""
        return {o: e.quantity for o, e in self.ledger.items() if e.state == RETURNED}

    def to_row(self) -> dict[str, Any]:
        """Return the table row for this stock."""
        row = {"sku": self.sku, "initial": self.initial, "restocked": self.restocked,
               "available": self.available, "reserved": self.reserved, "sold": self.sold,
               "ledger": dict(self.ledger), "horizon": self.horizon, "seen": self.seen}
        if self.buckets:
            row["buckets"] = {str(b): bucket for b, bucket in self.buckets.items()}
        return row

    @classmethod
    def from_row(cls, sku: str, row: Mapping[str, Any] | None) -> Stock:
        """Return the stock stored in ``row`` (no row: an unknown sku with no stock)."""
        if not row:
            return cls(sku)
        if "ledger" in row:
            ledger = _entries(row["ledger"])
        else:  # a row from before the ledger: its holds and returns
            ledger = {**{o: Entry(q, RETURNED, 0) for o, q in row.get("returns", {}).items()},
                      **{o: Entry(q, HELD, 0) for o, q in row.get("holds", {}).items()}}
        buckets = {int(b): Bucket._make(v) for b, v in row.get("buckets", {}).items()}
        return cls(sku, row["initial"], row["restocked"], row["available"], row["reserved"],
                   row["sold"], ledger, row.get("horizon", 0), row.get("seen", 0), buckets)

    def public(self) -> dict[str, int | str]:
        """Return what the API shows: ``{sku, available, reserved, sold}``."""
        return {"sku": self.sku, "available": self.available, "reserved": self.reserved,
                "sold": self.sold}

    def is_stale(self, order_id: str, at: int) -> bool:
        """Return True if a command for ``order_id`` at ``at`` belongs to a pruned order."""
        return bool(self.horizon) and order_id not in self.ledger and at <= self.horizon


def _entries(stored: Mapping[str, Any]) -> dict[str, Entry]:
    """Return a stored ledger's entries (those stored before ``placed`` have three fields)."""
    return {o: Entry._make(v) if len(v) == 4 else Entry(*v) for o, v in stored.items()}


def archive_row(entries: Mapping[str, Entry]) -> dict[str, Any]:
    """Return the table row of an archive row holding ``entries``."""
    return {"ledger": dict(entries)}


def archive_entries(row: Mapping[str, Any] | None) -> dict[str, Entry]:
    """Return the entries of a stored archive row (none: no entries)."""
    return _entries(row["ledger"]) if row else {}


def _noted(stock: Stock, order_id: str, entry: Entry, at: int) -> Stock:
    """Return ``stock`` with the order's ``entry``, seen at ``at``."""
    entry = entry._replace(at=max(entry.at, at))
    if stock.ledger.get(order_id) == entry:
        return stock
    return replace(stock, ledger={**stock.ledger, order_id: entry})


def reserve(stock: Stock, order_id: str, quantity: int, at: int = 0,
            placed: int = 0) -> tuple[Stock, bool]:
    """Hold ``quantity`` for ``order_id`` if available; return (stock, reserved?).

    An order the sku has seen keeps its answer: held or sold is "reserved" (asked again), and
    rejected, released or returned holds nothing, then or later.
    """
    entry = stock.ledger.get(order_id)
    if entry is not None:
        return _noted(stock, order_id, entry, at), entry.state in (HELD, SOLD)
    if stock.is_stale(order_id, at):
        return stock, False
    if quantity <= 0 or quantity > stock.available:
        return _noted(stock, order_id, Entry(0, REJECTED, at, placed), at), False
    held = _noted(stock, order_id, Entry(quantity, HELD, at, placed), at)
    return replace(held, available=stock.available - quantity,
                   reserved=stock.reserved + quantity), True


def release(stock: Stock, order_id: str, at: int = 0, placed: int = 0) -> Stock:
    """Give the hold of ``order_id`` back to available stock (a sale stays sold).

    An order the sku never held for is remembered as released, so that its reservation, if
    still on its way, holds nothing.
    """
    entry = stock.ledger.get(order_id)
    if entry is None:
        if stock.is_stale(order_id, at):
            return stock
        return _noted(stock, order_id, Entry(0, RELEASED, at, placed), at)
    if entry.state != HELD:
        return _noted(stock, order_id, entry, at)
    released = _noted(stock, order_id, entry._replace(state=RELEASED), at)
    return replace(released, available=stock.available + entry.quantity,
                   reserved=stock.reserved - entry.quantity)


def commit(stock: Stock, order_id: str, at: int = 0) -> Stock:
    """Turn the hold of ``order_id`` into a sale (nothing held: no change)."""
    entry = stock.ledger.get(order_id)
    if entry is None:
        return stock
    if entry.state != HELD:
        return _noted(stock, order_id, entry, at)
    sold = _noted(stock, order_id, entry._replace(state=SOLD), at)
    return replace(sold, reserved=stock.reserved - entry.quantity,
                   sold=stock.sold + entry.quantity)


def return_sold(stock: Stock, order_id: str, quantity: int, at: int = 0,
                placed: int = 0) -> Stock:
    """Put the units of a cancelled paid order back on the shelf, once per order.

    Sold units go back from sold; held units (the return overtook the order's commit) go back
    from reserved, and the late commit then sells nothing. An order pruned from the ledger
    after its sale returns ``quantity``, at most what was sold to orders no longer in it.
    """
    entry = stock.ledger.get(order_id)
    if entry is None:
        remembered = sum(e.quantity for e in stock.ledger.values() if e.state == SOLD)
        forgotten = stock.sold - remembered - sum(b.sold for b in stock.buckets.values())
        if stock.is_stale(order_id, at) or quantity <= 0 or quantity > forgotten:
            return stock
        returned = _noted(stock, order_id, Entry(quantity, RETURNED, at, placed), at)
        return replace(returned, available=stock.available + quantity,
                       sold=stock.sold - quantity)
    if entry.state not in (HELD, SOLD):
        return _noted(stock, order_id, entry, at)
    returned = _noted(stock, order_id, entry._replace(state=RETURNED), at)
    if entry.state == HELD:
        return replace(returned, available=stock.available + entry.quantity,
                       reserved=stock.reserved - entry.quantity)
    return replace(returned, available=stock.available + entry.quantity,
                   sold=stock.sold - entry.quantity)


def prune(stock: Stock, now: int, keep: int) -> Stock:
    """Forget the orders no longer held whose last command here is over ``keep`` s old.

    An entry whose bucket has an archive row stays until it is archived: it may stand for the
    archive's older entry of its order, and goes with the archive row.
    """
    seen = max(stock.seen, now)
    old = [o for o, e in stock.ledger.items() if e.state in PRUNABLE and e.at < seen - keep
           and bucket_of(e.placed) not in stock.buckets]
    if not old:
        return stock if seen == stock.seen else replace(stock, seen=seen)
    horizon = max(stock.horizon, *(stock.ledger[o].at for o in old))
    gone = set(old)
    ledger = {o: e for o, e in stock.ledger.items() if o not in gone}
    return replace(stock, ledger=ledger, horizon=horizon, seen=seen)


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


class Change(NamedTuple):
    """What one command did to a sku: its stock, what it causes, and its archive rows.

    ``archives`` are the archive rows to write (bucket -> every entry of the row), before the
    sku's row; ``dropped`` the archive rows to delete, after it. An archive row receives only
    entries the sku's row held before the command, and still holds until it is written, so a
    worker that dies between the two writes leaves nothing the replay would count twice.
    """

    stock: Stock
    effects: list[Effect]
    archives: dict[int, dict[str, Entry]]
    dropped: tuple[int, ...]


def _nothing_archived(bucket: int) -> Mapping[str, Entry]:
    return {}


def apply_inventory_event(stock: Stock, event: Event, keep: int = LEDGER_KEEP_S,
                          archive: ArchiveReader = _nothing_archived,
                          archive_over: int = LEDGER_ARCHIVE_OVER) -> Change:
    """Return the stock after ``event``, what it causes (answers, stock level notices), and
    the archive rows it writes; ``archive`` reads the sku's archive rows.

    The ledger forgets an order ``keep`` seconds of event time after its last command here
    (see :class:`Stock`); the orders agent passes SHOP_ORDER_TTL, since an order waits no
    longer than that for stock and a reservation older than it is for an expired order.

    The recent ledger stays short: once the second ``LEDGER_BUCKET_S`` after an order's
    bucket has passed, its finished entries may move to the bucket's archive row (one bucket
    a command, the oldest, while over ``archive_over`` such entries wait), and an archive row
    goes as a whole once its newest entry is ``keep`` old. A command for an order found only
    in an archive row works on its entry as if it were recent, and a changed entry stays
    recent until it is archived again.
    """
    at = int(event.occurred_at.timestamp())
    if isinstance(event, Restock):
        after = restock(stock, event.quantity, initial=event.initial)
        return _finish(stock, after, [], at, keep, (archive, archive_over), tell=True)
    if not isinstance(event, (ReserveStock, ReleaseStock, CommitStock, ReturnStock)):
        return Change(stock, [], {}, ())
    before = _lifted(stock, event.order_id, event.placed_at, archive)
    effects: list[Effect] = []
    if isinstance(event, ReserveStock):
        after, ok = reserve(before, event.order_id, event.quantity, at, event.placed_at)
        answer: Event = (
            StockReserved.new(order_id=event.order_id, sku=stock.sku, quantity=event.quantity,
                              correlation_id=event.order_id)
            if ok else
            StockRejected.new(order_id=event.order_id, sku=stock.sku, requested=event.quantity,
                              available=stock.available, correlation_id=event.order_id)
        )
        effects.append(Effect("orders", event.order_id, answer))
    elif isinstance(event, ReleaseStock):
        after = release(before, event.order_id, at, event.placed_at)
    elif isinstance(event, CommitStock):
        after = commit(before, event.order_id, at)
    else:
        after = return_sold(before, event.order_id, event.quantity, at, event.placed_at)
    if after is before:
        after = stock  # nothing changed (an archived entry stays where it is)
    return _finish(stock, after, effects, at, keep, (archive, archive_over),
                   order_id=event.order_id)


def _lifted(stock: Stock, order_id: str, placed: int, archive: ArchiveReader) -> Stock:
    """Return ``stock`` with the order's archived entry in its recent ledger, if it has one."""
    if order_id in stock.ledger:
        return stock
    for bucket in dict.fromkeys((bucket_of(placed), 0)):
        if bucket in stock.buckets:
            entry = archive(bucket).get(order_id)
            if entry is not None:
                kept = stock.buckets[bucket]
                sold = kept.sold - (entry.quantity if entry.state == SOLD else 0)
                return replace(stock, ledger={**stock.ledger, order_id: entry},
                               buckets={**stock.buckets, bucket: kept._replace(sold=sold)})
    return stock


def _finish(stock: Stock, after: Stock, effects: list[Effect], at: int, keep: int,
            archiving: tuple[ArchiveReader, int], *, order_id: str | None = None,
            tell: bool = False) -> Change:
    """Prune and archive ``after``, and tell the catalog of a new stock level."""
    if at > after.seen:
        after = replace(after, seen=at)
    after = prune(_dropped(after, keep), at, keep)  # a dropped row's entries may go too
    after, archives = _archived(after, *archiving, order_id)
    dropped = tuple(b for b in stock.buckets if b not in after.buckets)
    if tell or stock_level(after.available) != stock_level(stock.available):
        effects.append(Effect("catalog", stock.sku, StockLevelChanged.new(
            sku=stock.sku, level=stock_level(after.available), available=after.available)))
    return Change(after, effects, archives, dropped)


def _archived(stock: Stock, archive: ArchiveReader, over: int,
              order_id: str | None) -> tuple[Stock, dict[int, dict[str, Entry]]]:
    """Move the finished recent entries of the oldest closed bucket to its archive row.

    The entry of the command's own order stays (a later command moves it): an archive row may
    only receive entries the sku's row held before the command, so that the command, replayed
    after a worker died between the two writes, finds what it found the first time.
    """
    closing = stock.seen - 2 * LEDGER_BUCKET_S
    due = [bucket_of(e.placed) for o, e in stock.ledger.items()
           if e.state in PRUNABLE and bucket_of(e.placed) <= closing and o != order_id]
    if len(due) <= over:
        return stock, {}
    bucket = min(due)
    moving = {o: e for o, e in stock.ledger.items()
              if e.state in PRUNABLE and bucket_of(e.placed) == bucket and o != order_id}
    entries = {**(archive(bucket) if bucket in stock.buckets else {}), **moving}
    kept = Bucket(max(e.at for e in entries.values()),
                  sum(e.quantity for e in entries.values() if e.state == SOLD))
    ledger = {o: e for o, e in stock.ledger.items() if o not in moving}
    return (replace(stock, ledger=ledger, buckets={**stock.buckets, bucket: kept}),
            {bucket: entries})


def _dropped(stock: Stock, keep: int) -> Stock:
    """Forget the archive rows whose newest entry is over ``keep`` s old."""
    old = [b for b, kept in stock.buckets.items() if kept.at < stock.seen - keep]
    if not old:
        return stock
    horizon = max(stock.horizon, *(stock.buckets[b].at for b in old))
    buckets = {b: kept for b, kept in stock.buckets.items() if b not in old}
    return replace(stock, buckets=buckets, horizon=horizon)
