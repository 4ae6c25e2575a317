"""Inventory tables: the stock of each sku (written only by the inventory agent)."""

from __future__ import annotations

from app import app

__all__ = ["stock"]

#: sku -> models.inventory.Stock row (counts, holds per order, returns per order)
stock = app.Table("stock", key_type=str, help="Stock per sku.")
