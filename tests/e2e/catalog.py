"""The small catalog the browser journeys shop from, added through the API as an admin."""

from __future__ import annotations

from tests.e2e.api import call
from tests.integration.shop import ADMIN

#: sku -> (name, category, price in cents, stock)
PRODUCTS = {
    "BOOK-1": ("Garden Book", "books", 1500, 50),
    "BOOK-2": ("Cook Book", "books", 2500, 50),
    "KITCHEN-1": ("Garden Trowel", "kitchen", 900, 50),
    "KITCHEN-2": ("Tea Pot", "kitchen", 3200, 50),
    "TOYS-1": ("Red Kite", "toys", 1200, 3),
}


def stock_catalog(base_url: str) -> None:
    """Add PRODUCTS (idempotent: a product that exists is left alone); each is listed at once."""
    for sku, (name, category, price, stock) in PRODUCTS.items():
        status, body = call(base_url, "POST", "/api/products", headers=ADMIN, body={
            "sku": sku, "name": name, "category": category, "price_cents": price,
            "description": f"A fine {name.lower()}.", "initial_stock": stock})
        assert status in (201, 409), body
    status, body = call(base_url, "GET", "/api/products?per_page=100")
    assert status == 200 and {p["sku"] for p in body["items"]} >= set(PRODUCTS), body
