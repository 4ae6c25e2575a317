"""The saga's invariants checked through the API, and a load of concurrent orders."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from tests.integration.shop import Shop, customer, is_settled

__all__ = ["PAID", "check_invariants", "place_many", "settled_state", "shop_state",
           "wait_until_settled"]

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
                if status in (201, 202):
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


async def wait_until_settled(shop: Shop, placed: Sequence[tuple[str, str]],
                             within: float) -> None:
    """Wait until every order in ``placed`` has settled, all of them within ``within`` s,
    printing how many are left as they settle.

    One deadline for all: after a crash a backlog of thousands of orders drains at the
    worker's pace, and each of an order's hops waits behind it; a slow tail (an order that
    took 40 s on a loaded two-core machine) is the backlog, not a lost event.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    limit = asyncio.Semaphore(20)

    async def unsettled(user: str, order_id: str) -> bool:
        async with limit:
            status, body = await shop.call("GET", f"/api/orders/{order_id}",
                                           headers=customer(user))
        return not is_settled(status, body)

    waiting = list(placed)
    shown = began
    while True:
        left = await asyncio.gather(*(unsettled(user, oid) for user, oid in waiting))
        still = [order for order, is_left in zip(waiting, left, strict=True) if is_left]
        if not still:
            return
        if loop.time() - shown >= 5.0:
            shown = loop.time()
            print(f"{len(still)} of {len(placed)} orders still to settle after "
                  f"{shown - began:.0f} s")
        if loop.time() - began > within:
            raise AssertionError(f"{len(still)} orders did not settle within {within:.0f} s: "
                                 f"{still[:5]}")
        waiting = still
        await asyncio.sleep(0.5)


async def settled_state(shop: Shop, placed: Sequence[tuple[str, str]],
                        initial: Mapping[str, int], restocked: Mapping[str, int],
                        within: float = 30.0, orders_within: float = 120.0) -> dict[str, Any]:
    """Return the shop's state once every order has settled (asserting so after
    ``orders_within`` seconds) and the saga's invariants hold (asserting them ``within``
    seconds after that).

    An order reads as settled before all it caused has landed: a confirmed order's commits,
    a cancelled order's returns and refund follow it. A snapshot taken in between is not
    wrong, only early (sold is one order behind its orders, or the money one refund ahead).
    """
    await wait_until_settled(shop, placed, orders_within)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        state = await shop_state(shop, placed, list(initial))
        try:
            check_invariants(state, initial, restocked)
            return state
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.5)


def check_invariants(state: dict[str, Any], initial: Mapping[str, int],
                     restocked: Mapping[str, int]) -> None:
    """Assert the saga's invariants (docs/design.md) on a settled shop."""
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
