"""A stock command's cost against the size of its sku's ledger (no broker, no worker).

Every command on a sku reads and writes the sku's whole row, and the row keeps an entry for
each order that touched the sku within SHOP_ORDER_TTL (models/inventory.py, ``Stock``): a
shop that sells a sku N times a second holds about N x SHOP_ORDER_TTL entries in its row. The
bench builds rows of several sizes directly and times ``agents.inventory.change_stock`` (the
function the inventory agent calls) reserving against each, through a table that keeps rows
as the JSON bytes the store keeps. The baseline is the smallest ledger, in the same run.

``python -m bench.ledger``
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import cast

from agents.inventory import change_stock
from models.inventory import HELD, SOLD, Entry, ReserveStock, Stock
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


def _row(entries: int, at: int) -> Row:
    """Return a sku's row with ``entries`` orders in its ledger, half held, half sold."""
    ledger = {f"o-{n:06d}": Entry(1, HELD if n % 2 else SOLD, at) for n in range(entries)}
    return Stock("S", initial=10**9, available=10**9, reserved=entries // 2, sold=entries // 2,
                 ledger=ledger, seen=at).to_row()


def measure_ledger(sizes: tuple[int, ...] = SIZES, commands: int = COMMANDS) -> dict[int, float]:
    """Return µs a reserve takes against a ledger of each size in ``sizes``."""
    now = datetime.now(UTC)
    at = int(now.timestamp())
    timed: dict[int, float] = {}
    for size in sizes:
        table = JsonRows()
        table["S"] = _row(size, at)
        reserves = [ReserveStock(type="reserve_stock", sku="S", order_id=f"x-{n}", quantity=1,
                                 event_id=f"e-{size}-{n}", occurred_at=now)
                    for n in range(commands)]
        began = time.perf_counter()
        for offset, reserve in enumerate(reserves):
            change_stock(table, reserve, Position("inventory", offset, reserve.event_id),
                         keep=900)
        timed[size] = (time.perf_counter() - began) / commands * 1e6
    return timed


def print_ledger(timed: dict[int, float]) -> None:
    """Print each size's µs a reserve and its ratio to the smallest ledger's."""
    base = timed[min(timed)]
    print("stock command against its sku's ledger (orders within SHOP_ORDER_TTL): " + ", ".join(
        f"{size:,} orders {us:,.0f} µs = {us / base:.1f} x" for size, us in timed.items()))


if __name__ == "__main__":
    print_ledger(measure_ledger())
