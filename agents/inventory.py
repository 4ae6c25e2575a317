"""Inventory agent: the single writer of each sku's stock; answers reservations."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import inventory_topic
from app import app
from models.inventory import (
    INVENTORY_EVENTS,
    LEDGER_ARCHIVE_OVER,
    Entry,
    Restock,
    Stock,
    apply_inventory_event,
    archive_entries,
    archive_row,
)
from tables.inventory import archive_key, stock
from tables.replay import Position, Row, Send, decide_once

__all__ = ["change_stock", "keep_stock"]

#: Row field: the offset of the inventory event that last wrote each archive row (by bucket).
WRITTEN = "_archived"


async def apply_stock_command(event: Any, position: Position) -> None:
    """Apply one inventory command to its sku's stock, once, and send its answers."""
    await send_all(change_stock(stock, event, position, keep=int(app.settings.order_ttl)))


def change_stock(table: MutableMapping[str, Row], event: Any, position: Position,
                 *, keep: int, archive_over: int = LEDGER_ARCHIVE_OVER) -> list[Send]:
    """Apply an inventory command to its sku's row in ``table``, once; return its sends.

    ``keep`` is how long the sku's ledger remembers a finished order, ``archive_over`` how
    many finished orders the sku's row keeps before it archives them (models.inventory).
    The sku's archive rows are written before its row and deleted after it. The row notes
    which event last wrote each archive row, so that a redelivery the guard skips writes
    again those the row depends on, before the row itself (tables.replay._skip).
    """
    sku: str = event.sku
    dropped: list[int] = []

    def archived(bucket: int) -> Mapping[str, Entry]:
        return archive_entries(table.get(archive_key(sku, bucket)))

    def decide(row: Row | None) -> tuple[Row | None, list[Send]]:
        change = apply_inventory_event(Stock.from_row(sku, row), event, keep, archived,
                                       archive_over)
        if row is None and not isinstance(event, Restock):  # no row for unknown skus
            return None, to_sends(change.effects)
        for bucket, entries in change.archives.items():
            table[archive_key(sku, bucket)] = archive_row(entries)
        dropped.extend(change.dropped)
        after = change.stock.to_row()
        written = {b: offset for b, offset in (row or {}).get(WRITTEN, {}).items()
                   if int(b) in change.stock.buckets}
        written.update({str(b): position.offset for b in change.archives})
        if written:
            after[WRITTEN] = written
        return after, to_sends(change.effects)

    def rewrite_archives(row: Row) -> None:
        for bucket, offset in row.get(WRITTEN, {}).items():
            if offset >= position.offset:
                key = archive_key(sku, int(bucket))
                kept = table.get(key)
                if kept is not None:
                    table[key] = kept

    if "@" in sku:  # not a sku (web/products.SKU), and never an archive row's key
        return to_sends(apply_inventory_event(Stock(sku), event, keep).effects)
    sends = decide_once(table, sku, position, decide, rewrite_first=rewrite_archives)
    for bucket in dropped:
        table.pop(archive_key(sku, bucket), None)
    return sends


@app.agent(inventory_topic, name="inventory.stock")
async def keep_stock(stream: StreamT[bytes]) -> None:
    """Consume the inventory topic into the stock table."""
    await for_each_event(stream, INVENTORY_EVENTS, apply_stock_command, agent="inventory.stock")
