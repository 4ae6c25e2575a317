"""Recommendations on a real worker: behaviour tracked through POST /api/events and confirmed
orders, co-occurrence and popularity through the real agents, answers from the tables."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

BOOKS = [f"BOOK-{i}" for i in range(1, 6)]
TOYS = [f"TOY-{i}" for i in range(1, 5)]


async def track(shop: Shop, user_id: str, events: list[tuple[str, str]]) -> None:
    """Send ``(type, sku)`` behaviours of signed-in ``user_id``."""
    status, body = await shop.call("POST", "/api/events", headers=customer(user_id), json={
        "session_id": f"session-{user_id}",
        "events": [{"type": kind, "sku": sku} for kind, sku in events]})
    assert status == 202, body


async def until(shop: Shop, path: str, headers: dict[str, str], ok: Callable[[Any], bool],
                within: float = 30.0) -> Any:
    """GET ``path`` until ``ok(body)``; return the body."""
    deadline = time.monotonic() + within
    while True:
        status, body = await shop.call("GET", path, headers=headers)
        if status == 200 and ok(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {path}: {status} {body}")
        await asyncio.sleep(0.2)


def skus(body: Any) -> list[str]:
    return [item["sku"] for item in body["items"]]


async def test_recommendations_follow_behaviour_and_skip_purchases(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        for sku in BOOKS:
            await shop.add_product(sku, 50, category="books")
        for sku in TOYS:
            await shop.add_product(sku, 50, category="toys")
        await shop.wait_for_catalog(len(BOOKS) + len(TOYS))

        # Readers view books 1-4 together; more shoppers view and cart toys (more popular).
        for reader in ("reader-1", "reader-2", "reader-3"):
            await track(shop, reader, [("product_view", sku) for sku in BOOKS[:4]])
        for player in ("player-1", "player-2", "player-3", "player-4"):
            await track(shop, player, [("product_view", sku) for sku in TOYS[:3]]
                        + [("add_to_cart", "TOY-1")])

        # A new user gets the popular items: the toys, the carted one first.
        new = await until(shop, "/api/recommendations/newcomer", customer("newcomer"),
                          lambda body: set(skus(body)[:3]) == {"TOY-1", "TOY-2", "TOY-3"})
        assert skus(new)[0] == "TOY-1", new
        assert set(skus(new)[3:7]) == set(BOOKS[:4]), new

        # Similar: the books seen with BOOK-1, and no toy.
        similar = await until(shop, "/api/products/BOOK-1/similar", {},
                              lambda body: set(skus(body)) == {"BOOK-2", "BOOK-3", "BOOK-4"})
        assert all(item["score"] > 0 for item in similar["items"]), similar

        # A reader of books views two of them and buys a third.
        me = "book-lover"
        await track(shop, me, [("product_view", "BOOK-1"), ("product_view", "BOOK-2")])
        status, placed = await shop.place(me, [("BOOK-3", 1)])
        assert status == 201, placed
        order = await shop.settled(me, placed["id"])
        assert order["status"] == "confirmed", order

        def bought_and_books_first(body: Any) -> bool:
            listed = skus(body)
            return ("BOOK-3" not in listed and len(listed) >= 3
                    and all(sku.startswith("BOOK-") for sku in listed[:3]))

        mine = await until(shop, f"/api/recommendations/{me}", customer(me),
                           bought_and_books_first)
        assert "BOOK-4" in skus(mine)[:3], mine
        scores = [item["score"] for item in mine["items"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0, mine
        # The purchase stays excluded, also for an admin and on later reads.
        status, again = await shop.call("GET", f"/api/recommendations/{me}?limit=50",
                                        headers=ADMIN)
        assert status == 200 and "BOOK-3" not in skus(again), again
        status, other = await shop.call("GET", f"/api/recommendations/{me}",
                                        headers=customer("someone-else"))
        assert status == 404, other

        # Read latency, measured, not asserted (the goal: p99 < 10 ms).
        took = []
        for _ in range(200):
            start = time.perf_counter()
            status, _ = await shop.call("GET", f"/api/recommendations/{me}", headers=customer(me))
            took.append((time.perf_counter() - start) * 1000)
            assert status == 200
        took.sort()
        print(f"GET /api/recommendations: p50 {statistics.median(took):.2f} ms, "
              f"p99 {took[int(len(took) * 0.99) - 1]:.2f} ms over {len(took)} reads")


async def test_a_users_recommendations_are_the_same_through_either_worker(
    workers: WorkerFactory,
) -> None:
    first, second = workers.start("w1"), workers.start("w2")
    await asyncio.gather(asyncio.to_thread(first.wait_ready),
                         asyncio.to_thread(second.wait_ready))
    users = [f"pair-user-{n}" for n in range(8)]
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, first.url)
        for n, user in enumerate(users):  # each user alone sees their own two items together
            await track(shop, user, [("product_view", f"P-{n}"), ("product_view", f"Q-{n}")])
        servers: set[str] = set()
        for n, user in enumerate(users):
            for worker in (first, second):
                body = await until(Shop(http, worker.url), f"/api/recommendations/{user}",
                                   customer(user),
                                   lambda body, n=n: len(body["items"]) >= 3 and set(
                                       skus(body)[:2]) == {f"P-{n}", f"Q-{n}"})
                assert body["items"][0]["score"] > body["items"][2]["score"], body
            async with http.get(f"{second.url}/api/recommendations/{user}",
                                headers=customer(user)) as answer:
                servers.add(answer.headers.get("X-Served-By", ""))
        assert len(servers - {""}) == 2, servers  # both workers own some users' rows
