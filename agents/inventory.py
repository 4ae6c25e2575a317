"""Inventory agent: the single writer of each sku's stock; answers reservations."""

from __future__ import annotations

from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import inventory_topic
from app import app
from models.inventory import INVENTORY_EVENTS, Restock, Stock, apply_inventory_event
from tables.inventory import stock
from tables.replay import Position, Send, decide_once

__all__ = ["keep_stock"]


async def apply_stock_command(event: Any, position: Position) -> None:
    """Apply one inventory command to its sku's stock, once, and send its answers."""
    sku: str = event.sku

    def decide(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        after, effects = apply_inventory_event(Stock.from_row(sku, row), event)
        keep = row is not None or isinstance(event, Restock)  # no row for unknown skus
        return (after.to_row() if keep else None), to_sends(effects)

    await send_all(decide_once(stock, sku, position, decide))


@app.agent(inventory_topic, name="inventory.stock")
async def keep_stock(stream: StreamT[bytes]) -> None:
    """Consume the inventory topic into the stock table."""
    await for_each_event(stream, INVENTORY_EVENTS, apply_stock_command, agent="inventory.stock")


