"""Inventory tables: the stock of each sku (written only by the inventory agent)."""

from __future__ import annotations

from app import app

__all__ = ["archive_key", "stock"]

#: sku -> models.inventory.Stock row (counts, the recent ledger of orders); and
#: ``archive_key(sku, bucket)`` -> the sku's archive row of finished orders placed in that
#: bucket (models.inventory.archive_row), in the sku's partition like its row.
stock = app.Table("stock", key_type=str, help="Stock per sku, and its ledger's archive rows.")


def archive_key(sku: str, bucket: int) -> str:
    """Return the key of ``sku``'s archive row of ``bucket`` (a sku never holds ``@``)."""
    return f"{sku}@{bucket}"
