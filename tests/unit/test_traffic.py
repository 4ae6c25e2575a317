"""The simulated customer's choices (scripts/traffic.py) and the run's tally (load_stats)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts.load_stats import Tally, percentile
from scripts.traffic import (
    ACTION_WEIGHTS,
    FAVOURITE_WEIGHT,
    Customer,
    Product,
    choose_action,
    choose_items,
    choose_payment_method,
    choose_product,
    choose_promotion,
    outcome_of,
    prefer_categories,
    search_word,
)

CATALOG = [Product(f"{c[:4].upper()}-{n:04d}", f"Garden tool {n}", c, 1000 + n)
           for c in ("books", "garden", "toys", "music") for n in range(5)]


def customer(**changes: object) -> Customer:
    """Return a signed-in customer who likes garden things."""
    made = Customer(number=1, email="sim-1@example.com", password="simulated-1",
                    session_id="sim00000001",
                    preferences={"books": 1.0, "garden": FAVOURITE_WEIGHT, "toys": 1.0,
                                 "music": 1.0},
                    registered=True, token="token")
    for name, value in changes.items():
        setattr(made, name, value)
    return made


def test_a_new_customer_registers_then_logs_in() -> None:
    rng = random.Random(1)
    assert choose_action(customer(registered=False, token=None), rng) == "register"
    assert choose_action(customer(token=None), rng) == "login"


def test_a_signed_in_customer_does_every_shop_action_and_never_cancels_without_orders() -> None:
    rng = random.Random(2)
    without_orders = Counter(choose_action(customer(), rng) for _ in range(3000))
    assert without_orders["cancel"] == 0
    assert set(without_orders) == set(ACTION_WEIGHTS) - {"cancel"}
    with_orders = Counter(choose_action(customer(orders=["o1"], cart=["GARD-0001"]), rng)
                          for _ in range(3000))
    assert set(with_orders) == set(ACTION_WEIGHTS)
    assert with_orders["view"] > with_orders["ticket"]


def test_favourite_categories_are_chosen_more_often() -> None:
    rng = random.Random(3)
    picks = Counter(choose_product(CATALOG, customer().preferences, rng).category
                    for _ in range(2000))
    assert picks["garden"] > 3 * picks["books"]
    assert set(picks) == {"books", "garden", "toys", "music"}


def test_preferences_name_one_or_two_favourites_among_the_categories() -> None:
    rng = random.Random(4)
    for _ in range(50):
        prefs = prefer_categories(["books", "garden", "toys"], rng)
        assert set(prefs) == {"books", "garden", "toys"}
        assert 1 <= sum(w == FAVOURITE_WEIGHT for w in prefs.values()) <= 2
    assert prefer_categories([], rng) == {}


def test_preferences_for_categories_the_catalog_lacks_fall_back_to_any_product() -> None:
    product = choose_product(CATALOG, {"shoes": 5.0}, random.Random(5))
    assert product in CATALOG
    with pytest.raises(ValueError):
        choose_product([], {"books": 1.0}, random.Random(5))


@given(st.lists(st.sampled_from([p.sku for p in CATALOG]), max_size=8), st.integers())
def test_an_order_has_one_to_three_distinct_lines_from_the_cart(cart: list[str],
                                                                 seed: int) -> None:
    lines = choose_items(customer(cart=cart), CATALOG, random.Random(seed))
    skus = [sku for sku, _ in lines]
    assert 1 <= len(lines) <= 3
    assert len(set(skus)) == len(skus)
    assert all(1 <= quantity <= 3 for _, quantity in lines)
    if cart:
        assert set(skus) <= set(cart)


def test_payment_methods_are_mostly_ok_and_some_declined() -> None:
    rng = random.Random(6)
    methods = Counter(choose_payment_method(rng) for _ in range(2000))
    assert methods["pm_card_ok"] > 1500
    assert methods["pm_card_declined"] > 100


def test_a_promotion_code_only_when_one_is_active() -> None:
    rng = random.Random(7)
    assert {choose_promotion([], rng) for _ in range(100)} == {None}
    codes = Counter(choose_promotion(["SPRING10"], rng) for _ in range(1000))
    assert 200 < codes["SPRING10"] < 400


def test_search_words_come_from_the_name() -> None:
    rng = random.Random(8)
    assert search_word(Product("X-1", "Garden tool 3", "garden", 1), rng) in {"garden", "tool"}
    assert search_word(Product("X-1", "A b", "garden", 1), rng) == "X-1"


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "ok"), (202, "ok"), (409, "refused"), (422, "refused"), (429, "refused"),
    (500, "error"), (503, "error"), (None, "error")])
def test_outcomes(status: int | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def test_the_tally_counts_refusals_apart_from_errors_and_prints_a_table() -> None:
    tally = Tally()
    tally.record("POST /api/orders", 202, 0.010)
    tally.record("POST /api/orders", 409, 0.020)
    tally.record("POST /api/orders", 503, 0.030)
    tally.record("GET /api/products", None, 1.0)
    tally.actions["buy"] += 3
    tally.orders_placed = 1
    tally.orders_with_code = 1
    tally.order_statuses["confirmed"] += 1
    assert (tally.errors, tally.refused, tally.server_errors) == (2, 1, 1)
    assert "actions=3 errors=2 refused=1" in tally.progress_line(1.0, 0)
    summary = tally.summary(5.0)
    assert "POST /api/orders" in summary and "   409" in summary
    assert "orders: placed=1 confirmed=1 rejected=0" in summary
    assert "with a promotion code: 1, with a card that fails: 0" in summary
