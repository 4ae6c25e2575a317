"""models/catalog.py: stock levels, the catalog row, and how a listing is chosen."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.base import Event, decode_event
from models.catalog import (
    CATALOG_EVENTS,
    LOW_STOCK,
    ProductSaved,
    StockLevelChanged,
    apply_catalog_event,
    choose_listing,
    stock_level,
)

# -- stock levels ---------------------------------------------------------------------------


@pytest.mark.parametrize(("available", "level"), [
    (-3, "out_of_stock"), (0, "out_of_stock"), (1, "low_stock"), (LOW_STOCK, "low_stock"),
    (LOW_STOCK + 1, "in_stock"), (10_000, "in_stock"),
])
def test_the_stock_level_has_two_thresholds(available: int, level: str) -> None:
    assert stock_level(available) == level


@given(st.integers(-10, 100), st.integers(-10, 100))
def test_more_stock_never_shows_a_lower_level(a: int, b: int) -> None:
    rank = {"out_of_stock": 0, "low_stock": 1, "in_stock": 2}
    low, high = sorted((a, b))
    assert rank[stock_level(low)] <= rank[stock_level(high)]


# -- the catalog row ------------------------------------------------------------------------


def product(sku: str = "sku-a", name: str = "Blue mug", category: str = "mugs",
            price: int = 1200, **more: Any) -> ProductSaved:
    return ProductSaved.new(sku=sku, name=name, category=category, price_cents=price, **more)


def level(available: int, sku: str = "sku-a") -> StockLevelChanged:
    return StockLevelChanged.new(sku=sku, level=stock_level(available), available=available)


def test_a_product_without_stock_news_is_out_of_stock() -> None:
    row = apply_catalog_event(None, product(description="Holds tea", image_url="/m.png"))
    assert row == {"sku": "sku-a", "name": "Blue mug", "description": "Holds tea",
                   "category": "mugs", "price_cents": 1200, "image_url": "/m.png",
                   "stock_level": "out_of_stock", "available": 0}


def test_a_stock_level_can_arrive_before_its_product() -> None:
    early = apply_catalog_event(None, level(3))
    assert early == {"sku": "sku-a", "stock_level": "low_stock", "available": 3}
    both = apply_catalog_event(early, product())
    assert both == apply_catalog_event(apply_catalog_event(None, product()), level(3))
    assert (both["name"], both["stock_level"], both["available"]) == ("Blue mug", "low_stock", 3)


def test_the_row_given_is_not_changed() -> None:
    row = apply_catalog_event(None, product())
    before = dict(row)
    apply_catalog_event(row, level(9))
    apply_catalog_event(row, product(name="Red mug"))
    assert row == before


names = st.text(st.characters(codec="ascii", categories=["L", "Zs"]), min_size=1, max_size=12)


@given(
    saves=st.lists(st.tuples(names, st.sampled_from(["mugs", "pens"]), st.integers(0, 9999)),
                   min_size=1, max_size=4),
    levels=st.lists(st.integers(-1, 40), min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_products_and_stock_levels_merge_in_any_interleaving(
    saves: list[tuple[str, str, int]], levels: list[int], order: Any
) -> None:
    """Each kind arrives in its own order; how the two kinds interleave does not matter."""
    products = [product(name=n, category=c, price=p) for n, c, p in saves]
    stock = [level(n) for n in levels]
    row: dict[str, Any] | None = None
    merged: list[ProductSaved | StockLevelChanged] = []
    while products or stock:
        source = products if (products and (not stock or order.random() < 0.5)) else stock
        merged.append(source.pop(0))
    for event in merged:
        row = apply_catalog_event(row, event)
    last_name, last_category, last_price = saves[-1]
    assert row == {"sku": "sku-a", "name": last_name, "description": "",
                   "category": last_category, "price_cents": last_price, "image_url": "",
                   "stock_level": stock_level(levels[-1]), "available": levels[-1]}


def test_catalog_events_decode_from_the_wire() -> None:
    for event in (product(), level(4)):
        back: Event = decode_event(CATALOG_EVENTS, event.dumps())
        assert type(back) is type(event) and back.asdict() == event.asdict()


# -- listings -------------------------------------------------------------------------------

SHOP: list[dict[str, Any]] = [
    {"sku": "m1", "name": "Blue Mug", "category": "mugs"},
    {"sku": "m2", "name": "big red mug", "category": "mugs"},
    {"sku": "m3", "name": "Red mug", "category": "mugs"},
    {"sku": "p1", "name": "Red pen", "category": "pens"},
    {"sku": "p2", "name": "Fountain pen", "category": "pens"},
    {"sku": "s9", "stock_level": "in_stock", "available": 7},  # a level before its product
]


def skus(listing: Any) -> list[str]:
    return [p["sku"] for p in listing.items]


def test_a_listing_is_sorted_by_name_whatever_its_case() -> None:
    listing = choose_listing(SHOP)
    assert skus(listing) == ["m2", "m1", "p2", "m3", "p1"]
    assert (listing.total, listing.page, listing.per_page) == (5, 1, 20)


def test_a_category_keeps_its_products_only() -> None:
    assert skus(choose_listing(SHOP, category="pens")) == ["p2", "p1"]
    assert choose_listing(SHOP, category="hats").total == 0
    assert choose_listing(SHOP, category="").total == 5


@pytest.mark.parametrize(("q", "expected"), [
    ("red", ["m2", "m3", "p1"]),
    ("RED MUG", ["m2", "m3"]),
    ("mug red", ["m2", "m3"]),
    ("  red   pen ", ["p1"]),
    ("ug", ["m2", "m1", "m3"]),  # words match inside names
    ("red hat", []),
    ("", ["m2", "m1", "p2", "m3", "p1"]),
    ("   ", ["m2", "m1", "p2", "m3", "p1"]),
    (None, ["m2", "m1", "p2", "m3", "p1"]),
])
def test_a_search_needs_every_word_in_the_name(q: str | None, expected: list[str]) -> None:
    assert skus(choose_listing(SHOP, q=q)) == expected


def test_category_and_search_combine() -> None:
    assert skus(choose_listing(SHOP, category="mugs", q="Red")) == ["m2", "m3"]


def test_pages_split_the_matches_and_count_them_all() -> None:
    first = choose_listing(SHOP, page=1, per_page=2)
    second = choose_listing(SHOP, page=2, per_page=2)
    last = choose_listing(SHOP, page=3, per_page=2)
    beyond = choose_listing(SHOP, page=4, per_page=2)
    assert (skus(first), skus(second), skus(last), skus(beyond)) == (
        ["m2", "m1"], ["p2", "m3"], ["p1"], [])
    assert {first.total, second.total, last.total, beyond.total} == {5}
    assert (beyond.page, beyond.per_page) == (4, 2)


def test_a_listing_hands_out_copies() -> None:
    listing = choose_listing(SHOP, q="blue")
    listing.items[0]["name"] = "changed"
    assert SHOP[0]["name"] == "Blue Mug"


catalog_rows = st.lists(
    st.fixed_dictionaries({
        "name": st.text(st.sampled_from("abcAB "), max_size=6),
        "category": st.sampled_from(["mugs", "pens", "hats"]),
    }) | st.fixed_dictionaries({"stock_level": st.just("in_stock")}),
    max_size=25,
).map(lambda rows: [{"sku": f"s{i:02}", **row} for i, row in enumerate(rows)])


@given(rows=catalog_rows, category=st.sampled_from([None, "", "mugs", "pens"]),
       q=st.none() | st.text(st.sampled_from("abAB "), max_size=4),
       per_page=st.integers(1, 7))
def test_all_pages_together_are_the_matches_once_each(
    rows: list[dict[str, Any]], category: str | None, q: str | None, per_page: int
) -> None:
    words = (q or "").lower().split()
    wanted = {r["sku"] for r in rows if "name" in r
              and (not category or r["category"] == category)
              and all(w in r["name"].lower() for w in words)}
    total = choose_listing(rows, category=category, q=q, per_page=per_page).total
    assert total == len(wanted)
    pages = [choose_listing(rows, category=category, q=q, page=n, per_page=per_page)
             for n in range(1, math.ceil(total / per_page) + 2)]
    seen = [p["sku"] for page in pages for p in page.items]
    assert len(seen) == len(set(seen)), "a product on two pages"
    assert set(seen) == wanted
    assert all(len(page.items) <= per_page and page.total == total for page in pages)
    assert pages[-1].items == [], "the page after the last is empty"
    keys = [(p["name"].lower(), p["sku"]) for page in pages for p in page.items]
    assert keys == sorted(keys)
