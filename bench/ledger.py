"""A stock command's cost against the size of its sku's ledger (no broker, no worker).

A sku's ledger keeps an entry for each order that touched the sku within SHOP_ORDER_TTL
(models/inventory.py, ``Stock``): a shop that sells a sku N times a second holds about
N x SHOP_ORDER_TTL entries. The recent ones are in the sku's row, which every command reads
and writes; the others in archive rows by the time their order was placed. The bench sells
a sku N orders spread over the last SHOP_ORDER_TTL, through ``agents.inventory.change_stock``
(the function the inventory agent calls) and a table that keeps rows as the JSON bytes the
store keeps, then times reserves for new orders against it. The baseline is the smallest
ledger, in the same run.

``python -m bench.ledger``
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import cast

from agents.inventory import change_stock
from models.base import Event
from models.inventory import LEDGER_KEEP_S, CommitStock, ReserveStock, Restock
from tables.replay import Position, Row

__all__ = ["SIZES", "measure_ledger", "print_ledger"]

#: Ledger sizes timed (orders in the sku's row); the first is the baseline.
SIZES = (10, 100, 1_000, 5_000)
#: Reserves timed against each size.
COMMANDS = 100


class JsonRows(MutableMapping[str, Row]):
    """Rows kept as JSON bytes, as the table's store keeps them."""

    def __init__(self) -> None:
        self._raw: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> Row:
        return cast(Row, json.loads(self._raw[key]))

    def __setitem__(self, key: str, row: Row) -> None:
        self._raw[key] = json.dumps(row).encode()

    def __delitem__(self, key: str) -> None:
        del self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _sold(table: JsonRows, orders: int, now: int, keep: int) -> int:
    """Sell ``orders`` orders of one unit each, placed evenly over the ``keep`` s before
    ``now`` (each reserved, then paid a second later); return the next offset."""
    offset = 0

    def apply(event: Event) -> None:
        nonlocal offset
        change_stock(table, event, Position("inventory", offset, event.event_id), keep=keep)
        offset += 1

    apply(Restock(type="restock", event_id="stock", sku="S", quantity=10**9, initial=True,
                  occurred_at=_at(now - keep - 1)))
    for n in range(orders):
        placed = now - keep + n * keep // orders
        apply(ReserveStock(type="reserve_stock", event_id=f"r-{n}", sku="S", order_id=f"o-{n}",
                           quantity=1, placed_at=placed, occurred_at=_at(placed)))
        apply(CommitStock(type="commit_stock", event_id=f"c-{n}", sku="S", order_id=f"o-{n}",
                          placed_at=placed, occurred_at=_at(placed + 1)))
    return offset


def _at(second: int) -> datetime:
    return datetime.fromtimestamp(second, UTC)


def measure_ledger(sizes: tuple[int, ...] = SIZES, commands: int = COMMANDS,
                   keep: int = LEDGER_KEEP_S) -> dict[int, float]:
    """Return µs a reserve takes against a ledger of each size in ``sizes``."""
    now = int(time.time())
    timed: dict[int, float] = {}
    for size in sizes:
        table = JsonRows()
        offset = _sold(table, size, now, keep)
        reserves = [ReserveStock(type="reserve_stock", sku="S", order_id=f"x-{n}", quantity=1,
                                 event_id=f"e-{size}-{n}", placed_at=now, occurred_at=_at(now))
                    for n in range(commands)]
        began = time.perf_counter()
        for n, reserve in enumerate(reserves):
            change_stock(table, reserve, Position("inventory", offset + n, reserve.event_id),
                         keep=keep)
        timed[size] = (time.perf_counter() - began) / commands * 1e6
    return timed


def print_ledger(timed: dict[int, float]) -> None:
    """Print each size's µs a reserve and its ratio to the smallest ledger's."""
    base = timed[min(timed)]
    print("stock command against its sku's ledger (orders within SHOP_ORDER_TTL): " + ", ".join(
        f"{size:,} orders {us:,.0f} µs = {us / base:.1f} x" for size, us in timed.items()))


if __name__ == "__main__":
    print_ledger(measure_ledger())
