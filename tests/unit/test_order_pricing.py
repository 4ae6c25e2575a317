"""models/orders.price_order: an order priced from catalog rows, the same skus merged."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.orders import MAX_UNITS, PricingError, price_order

CATALOG = {"sku-a": {"name": "Mug", "price_cents": 1250},
           "sku-b": {"name": "Tea", "price_cents": 399},
           "sku-x": {"stock_level": "in_stock"}}  # stock known, product not (yet)

lines = st.lists(st.tuples(st.sampled_from(("sku-a", "sku-b")), st.integers(1, 40)),
                 min_size=1, max_size=6)


@given(lines)
def test_the_same_skus_are_merged_and_the_subtotal_adds_up(order: list[tuple[str, int]]) -> None:
    wanted = Counter[str]()
    for sku, quantity in order:
        wanted[sku] += quantity
    if max(wanted.values()) > MAX_UNITS:
        with pytest.raises(PricingError):
            price_order(order, CATALOG)
        return
    priced, subtotal = price_order(order, CATALOG)
    assert {line.sku: line.quantity for line in priced} == dict(wanted)
    assert all(line.unit_price_cents == CATALOG[line.sku]["price_cents"] for line in priced)
    assert subtotal == sum(CATALOG[sku]["price_cents"] * qty for sku, qty in wanted.items())


@pytest.mark.parametrize("sku", ["sku-x", "nope"])
def test_a_product_the_catalog_does_not_name_is_refused(sku: str) -> None:
    with pytest.raises(PricingError, match="do not exist") as refused:
        price_order([("sku-a", 1), (sku, 2)], CATALOG)
    assert refused.value.problems == [{"field": "items.sku", "problem": f"unknown sku {sku}"}]


def test_more_than_the_most_units_of_one_product_is_refused() -> None:
    with pytest.raises(PricingError, match=f"at most {MAX_UNITS}"):
        price_order([("sku-a", MAX_UNITS), ("sku-a", 1)], CATALOG)
