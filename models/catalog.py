"""The catalog: products, their stock level for listings, and how a listing is chosen.

Products change rarely (admin edits, the seed) and are read on every page and every order, so
every worker keeps the whole catalog (a global table fed by the one-partition ``catalog``
topic). A listing shows a coarse stock level; the exact counts are the inventory's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.base import Event, event_types

__all__ = [
    "CATALOG_EVENTS",
    "LOW_STOCK",
    "Listing",
    "ProductSaved",
    "StockLevelChanged",
    "apply_catalog_event",
    "choose_listing",
    "stock_level",
]

#: At or below this many available units a product shows as low on stock.
LOW_STOCK = 5


class ProductSaved(Event):
    """A product was created or updated (the full product)."""

    event_type = "product_saved"
    sku: str
    name: str
    category: str
    price_cents: int
    description: str = ""
    image_url: str = ""


class StockLevelChanged(Event):
    """A sku's stock level (in_stock, low_stock, out_of_stock) changed."""

    event_type = "stock_level_changed"
    sku: str
    level: str
    available: int


CATALOG_EVENTS = event_types(ProductSaved, StockLevelChanged)


def stock_level(available: int) -> str:
    """Return the level a listing shows for ``available`` units."""
    if available <= 0:
        return "out_of_stock"
    return "low_stock" if available <= LOW_STOCK else "in_stock"


def apply_catalog_event(
    product: Mapping[str, Any] | None, event: ProductSaved | StockLevelChanged
) -> dict[str, Any]:
    """Return the catalog row of a product after ``event``."""
    row = dict(product or {"sku": event.sku, "stock_level": "out_of_stock", "available": 0})
    if isinstance(event, ProductSaved):
        row.update(sku=event.sku, name=event.name, description=event.description,
                   category=event.category, price_cents=event.price_cents,
                   image_url=event.image_url)
    else:
        row.update(stock_level=event.level, available=event.available)
    return row


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of products and how many match in all."""

    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int


def choose_listing(
    products: Iterable[Mapping[str, Any]],
    *,
    category: str | None = None,
    q: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> Listing:
    """Return the page of products in ``category`` whose name has all words of ``q``."""
    words = q.lower().split() if q else []
    matching = sorted(
        (
            dict(p) for p in products
            if "name" in p  # a stock level can arrive before its product
            and (not category or p["category"] == category)
            and all(word in p["name"].lower() for word in words)
        ),
        key=lambda p: (p["name"].lower(), p["sku"]),
    )
    start = (page - 1) * per_page
    return Listing(matching[start:start + per_page], len(matching), page, per_page)
