"""The saga's invariants checked through the API, and a load of concurrent orders."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from tests.integration.shop import Shop, customer

__all__ = ["PAID", "check_invariants", "place_many", "shop_state"]

PAID = ("confirmed", "shipped", "delivered")
PAYMENT_METHODS = (["pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds"], [8, 1, 1])


async def place_many(shops: Sequence[Shop], skus: Sequence[str], orders: int, customers: int,
                     rng: random.Random, *, in_flight: int = 40,
                     promotion: tuple[str, int] | None = None) -> list[tuple[str, str]]:
    """Place ``orders`` orders concurrently through ``shops`` in turn; return (customer, id).

    ``promotion=(code, k)`` uses the code in every k-th order.
    """
    limit = asyncio.Semaphore(in_flight)

    async def one(n: int) -> tuple[str, str]:
        user = f"customer-{n % customers}"
        chosen = rng.sample(sorted(skus), rng.randint(1, 3))
        method = rng.choices(*PAYMENT_METHODS)[0]
        lines = [(s, rng.randint(1, 3)) for s in chosen]
        extra = {"promotion_code": promotion[0]} if promotion and n % promotion[1] == 0 else {}
        async with limit:
            for attempt in range(100):  # a killed worker does not answer: retry on another
                shop = shops[(n + attempt) % len(shops)]
                try:
                    status, body = await shop.place(user, lines, method, idempotency_key=str(n),
                                                    **extra)
                except (OSError, aiohttp.ClientError, TimeoutError):
                    status, body = 0, None
                if status == 202:
                    return user, body["id"]
                await asyncio.sleep(0.2)
        raise AssertionError(f"order {n} was never accepted: {status} {body}")

    return await asyncio.gather(*(one(n) for n in range(orders)))


async def shop_state(shop: Shop, placed: Sequence[tuple[str, str]],
                     skus: Sequence[str]) -> dict[str, Any]:
    """Return every order, payment and stock as the API shows them."""
    orders = {oid: await shop.settled(user, oid) for user, oid in placed}
    payments = {}
    for user, oid in placed:
        status, body = await shop.call("GET", f"/api/payments/{oid}", headers=customer(user))
        if status == 200:
            payments[oid] = body
    stock = {sku: await shop.stock(sku) for sku in skus}
    return {"orders": orders, "payments": payments, "stock": stock}


def check_invariants(state: dict[str, Any], initial: Mapping[str, int],
                     restocked: Mapping[str, int]) -> None:
    """Assert the saga's invariants (DESIGN.md) on a settled shop."""
    orders, payments, stock = state["orders"], state["payments"], state["stock"]
    assert all(o["status"] not in ("placed", "reserved") for o in orders.values())
    sold: Counter[str] = Counter()
    for order in orders.values():
        if order["status"] in PAID:
            for line in order["items"]:
                sold[line["sku"]] += line["quantity"]
    for sku, units in initial.items():
        s = stock[sku]
        assert min(s["available"], s["reserved"], s["sold"]) >= 0, s
        assert units + restocked.get(sku, 0) == s["available"] + s["reserved"] + s["sold"], s
        assert s["reserved"] == 0, f"{sku}: units still held after every order settled: {s}"
        assert s["sold"] == sold[sku], (sku, s, sold[sku])
    charged = sum(p["amount_cents"] - p["refunded_cents"] for p in payments.values()
                  if p["status"] in ("succeeded", "refunded"))
    assert charged == sum(o["total_cents"] for o in orders.values() if o["status"] in PAID)
    for oid, order in orders.items():
        if order["status"] not in PAID and oid in payments:
            assert payments[oid]["status"] in ("failed", "refunded"), (order, payments[oid])
