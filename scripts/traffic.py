"""The simulated customer: what it does next, what it likes, what it buys and how it pays.

Pure functions of a customer's state and a ``random.Random``, so a seeded simulation makes
the same choices every run. ``scripts/simulate.py`` turns the choices into HTTP requests.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ACTION_WEIGHTS",
    "Action",
    "Customer",
    "Product",
    "choose_action",
    "choose_items",
    "choose_payment_method",
    "choose_product",
    "choose_promotion",
    "outcome_of",
    "prefer_categories",
    "search_word",
]

#: What a signed-in customer may do, as the simulation names it.
Action = Literal["register", "login", "browse", "search", "view", "add_to_cart", "buy",
                 "cancel", "ticket"]

#: How often a signed-in customer picks each action, when it may (weights, not percents).
ACTION_WEIGHTS: Mapping[Action, float] = {
    "browse": 25.0,
    "search": 10.0,
    "view": 25.0,
    "add_to_cart": 12.0,
    "buy": 14.0,
    "cancel": 4.0,
    "ticket": 3.0,
}

#: Payment methods of the simulated provider and how often customers use them.
PAYMENT_WEIGHTS: Mapping[str, float] = {
    "pm_card_ok": 85.0,
    "pm_card_declined": 10.0,
    "pm_card_insufficient_funds": 5.0,
}

#: The share of orders that carry an active promotion code (when there is one).
PROMOTION_SHARE = 0.3

#: How much more a customer's favourite categories weigh than the others.
FAVOURITE_WEIGHT = 8.0


@dataclass(frozen=True, slots=True)
class Product:
    """A product of the catalog as the customer sees it."""

    sku: str
    name: str
    category: str
    price_cents: int

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Product:
        """Build a product from an item of ``GET /api/products``."""
        return cls(str(item["sku"]), str(item.get("name") or item["sku"]),
                   str(item.get("category") or ""), int(item.get("price_cents") or 0))


@dataclass(slots=True)
class Customer:
    """One simulated customer: credentials, session, preferences, cart and orders."""

    number: int
    email: str
    password: str
    session_id: str
    preferences: dict[str, float]
    registered: bool = False
    token: str | None = None
    #: The Shop-Position of the customer's last write answered 202, sent with their next
    #: requests until the API has applied it (docs/guarantees.md).
    position: str | None = None
    cart: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    busy: bool = False


def prefer_categories(categories: Sequence[str], rng: random.Random) -> dict[str, float]:
    """Return a weight per category: one or two favourites weigh FAVOURITE_WEIGHT, others 1."""
    weights = {category: 1.0 for category in categories}
    if categories:
        for favourite in rng.sample(list(categories), k=min(len(categories), rng.randint(1, 2))):
            weights[favourite] = FAVOURITE_WEIGHT
    return weights


def choose_action(customer: Customer, rng: random.Random) -> Action:
    """Return what ``customer`` does next: register, log in, or a weighted shop action."""
    if not customer.registered:
        return "register"
    if customer.token is None:
        return "login"
    weights = dict(ACTION_WEIGHTS)
    if not customer.orders:
        weights["cancel"] = 0.0
    if not customer.cart:
        weights["buy"] /= 3  # an impulse buy without a cart is rarer
    actions = list(weights)
    return rng.choices(actions, weights=[weights[a] for a in actions])[0]


def _category(preferences: Mapping[str, float], rng: random.Random) -> str:
    categories = list(preferences)
    return rng.choices(categories, weights=[preferences[c] for c in categories])[0]


def choose_product(products: Sequence[Product], preferences: Mapping[str, float],
                   rng: random.Random) -> Product:
    """Return a product, its category weighted by the customer's preferences."""
    if not products:
        raise ValueError("the catalog is empty")
    known = {p.category for p in products}
    usable = {c: w for c, w in preferences.items() if c in known}
    if not usable:
        return rng.choice(list(products))
    category = _category(usable, rng)
    return rng.choice([p for p in products if p.category == category])


def choose_items(customer: Customer, products: Sequence[Product],
                 rng: random.Random) -> list[tuple[str, int]]:
    """Return the order's lines: up to three skus from the cart (or one liked product)."""
    skus = list(dict.fromkeys(customer.cart)) or [
        choose_product(products, customer.preferences, rng).sku]
    chosen = rng.sample(skus, k=min(len(skus), rng.randint(1, 3)))
    return [(sku, rng.choices([1, 2, 3], weights=[80, 15, 5])[0]) for sku in chosen]


def choose_payment_method(rng: random.Random) -> str:
    """Return the payment method of an order (mostly a card that works)."""
    methods = list(PAYMENT_WEIGHTS)
    return rng.choices(methods, weights=[PAYMENT_WEIGHTS[m] for m in methods])[0]


def choose_promotion(active_codes: Sequence[str], rng: random.Random) -> str | None:
    """Return a promotion code for PROMOTION_SHARE of the orders when any is active."""
    if not active_codes or rng.random() >= PROMOTION_SHARE:
        return None
    return rng.choice(list(active_codes))


def search_word(product: Product, rng: random.Random) -> str:
    """Return a word of the product's name to search for (the sku if the name has none)."""
    words = [w for w in product.name.split() if len(w) >= 3 and w.isalnum()]
    return rng.choice(words).lower() if words else product.sku


def outcome_of(status: int | None) -> Literal["ok", "refused", "error"]:
    """Classify an answer: 2xx/3xx ok, 4xx an expected refusal, 5xx or no answer an error."""
    if status is None or status >= 500:
        return "error"
    if status >= 400:
        return "refused"
    return "ok"
