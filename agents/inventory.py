"""Inventory agent: the single writer of each sku's stock; answers reservations."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import inventory_topic
from app import app
from models.inventory import INVENTORY_EVENTS, Restock, Stock, apply_inventory_event
from tables.inventory import stock
from tables.replay import Position, Row, Send, decide_once

__all__ = ["change_stock", "keep_stock"]


async def apply_stock_command(event: Any, position: Position) -> None:
    """Apply one inventory command to its sku's stock, once, and send its answers."""
    await send_all(change_stock(stock, event, position, keep=int(app.settings.order_ttl)))


def change_stock(table: MutableMapping[str, Row], event: Any, position: Position,
                 *, keep: int) -> list[Send]:
    """Apply an inventory command to its sku's row in ``table``, once; return its sends.

    ``keep`` is how long the sku's ledger remembers a finished order (models.inventory.Stock).
    """
    sku: str = event.sku

    def decide(row: Row | None) -> tuple[Row | None, list[Send]]:
        after, effects = apply_inventory_event(Stock.from_row(sku, row), event, keep)
        known = row is not None or isinstance(event, Restock)  # no row for unknown skus
        return (after.to_row() if known else None), to_sends(effects)

    return decide_once(table, sku, position, decide)


@app.agent(inventory_topic, name="inventory.stock")
async def keep_stock(stream: StreamT[bytes]) -> None:
    """Consume the inventory topic into the stock table."""
    await for_each_event(stream, INVENTORY_EVENTS, apply_stock_command, agent="inventory.stock")


