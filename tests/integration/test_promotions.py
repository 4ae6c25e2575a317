"""Promotions on a real worker: a limited code under concurrent orders, windows, give-backs,
and the promotion events on RabbitMQ's shop.promotions exchange."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp
import pytest

from rabbit_bridge.topology import PROMOTIONS_EXCHANGE
from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

SKU = "PROMO-0001"


def window(start_days: float, end_days: float | None) -> dict[str, str | None]:
    now = datetime.now(UTC)
    return {"starts_at": (now + timedelta(days=start_days)).isoformat(),
            "ends_at": (now + timedelta(days=end_days)).isoformat() if end_days else None}


async def create(shop: Shop, code: str, **fields: Any) -> dict[str, Any]:
    body = {"code": code, "kind": "percent", "value": 10, **window(-1, 1), **fields}
    status, answer = await shop.call("POST", "/api/promotions", headers=ADMIN, json=body)
    assert status == 201, answer
    return dict(answer)


async def used(shop: Shop, code: str, expected: int, within: float = 20.0) -> int:
    """Return the code's use count once it is ``expected`` (or the last seen after a while)."""
    deadline = time.monotonic() + within
    count = -1
    while time.monotonic() < deadline:
        _, body = await shop.call("GET", f"/api/promotions/{code}", headers=ADMIN)
        count = body["used"]
        if count == expected:
            break
        await asyncio.sleep(0.2)
    return count


async def stock_soon(shop: Shop, expected: tuple[int, int, int],
                     within: float = 10.0) -> tuple[int, int, int]:
    """Return (available, reserved, sold) once it is ``expected`` (commits are asynchronous)."""
    deadline = time.monotonic() + within
    while True:
        stock = await shop.stock(SKU)
        counts = (stock["available"], stock["reserved"], stock["sold"])
        if counts == expected or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def test_a_code_limited_to_ten_is_redeemed_ten_times_under_fifty_orders(
        workers: WorkerFactory) -> None:
    queue_name = f"test.promotions.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(workers.vhost_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(PROMOTIONS_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                              durable=True)
    queue = await channel.declare_queue(queue_name, auto_delete=True)
    await queue.bind(exchange, "promotion.#")

    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product(SKU, 500, price_cents=2000)
        await shop.wait_for_catalog(1)
        created = await create(shop, "ten", usage_limit=10)
        assert (created["code"], created["status"], created["used"]) == ("TEN", "active", 0)

        answers = await asyncio.gather(*(
            shop.place(f"buyer-{n}", [(SKU, 1)], promotion_code="ten") for n in range(50)))
        placed = [(f"buyer-{n}", body["id"]) for n, (status, body) in enumerate(answers)
                  if status == 201]
        refused_early = [body for status, body in answers if status == 422]
        assert len(placed) + len(refused_early) == 50, answers
        assert all("TEN is used up" in body["error"]["message"] for body in refused_early)
        orders = await asyncio.gather(*(shop.settled(user, oid) for user, oid in placed))
        outcome = Counter((o["status"], o["discount_cents"]) for o in orders)
        print(f"50 orders: {len(refused_early)} refused at the door, then {dict(outcome)}")
        discounted = [o for o in orders if o["status"] == "confirmed"]
        assert len(discounted) == 10
        assert all(o["discount_cents"] == 200 and o["total_cents"] == 1800 for o in discounted)
        rejected = [o for o in orders if o["status"] != "confirmed"]
        assert all(o["status"] == "rejected" and "TEN is used up" in o["reason"]
                   for o in rejected)
        assert await used(shop, "TEN", 10) == 10
        assert await stock_soon(shop, (490, 0, 10)) == (490, 0, 10)

        # A cancelled order gives its redemption back, and the code can be used again.
        owner = next(user for user, oid in placed if oid == discounted[0]["id"])
        status, _ = await shop.call("POST", f"/api/orders/{discounted[0]['id']}/cancel",
                                    headers=customer(owner))
        assert status == 200
        assert await used(shop, "TEN", 9) == 9
        status, again = await shop.place("late-buyer", [(SKU, 1)], promotion_code="TEN")
        assert status == 201
        assert (await shop.settled("late-buyer", again["id"]))["status"] == "confirmed"
        assert await used(shop, "TEN", 10) == 10

    kinds: Counter[str] = Counter()
    ids: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and kinds["promotion.redeemed"] < 11:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        await message.ack()
        body = json.loads(message.body)
        assert body["code"] == "TEN" and message.message_id
        if message.message_id not in ids:
            ids.add(message.message_id)
            kinds[body["type"]] += 1
    await connection.close()
    print(f"shop.promotions carried {dict(kinds)}")
    assert kinds["promotion.created"] == 1
    assert kinds["promotion.activated"] == 1
    assert kinds["promotion.redeemed"] == 11


async def test_codes_outside_their_window_or_rules_are_refused_with_a_reason(
        workers: WorkerFactory) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product(SKU, 50, price_cents=2000)
        await shop.wait_for_catalog(1)
        await create(shop, "OLD", **window(-3, -1))
        await create(shop, "SOON", **window(1, 3))
        await create(shop, "BIG", min_order_cents=10_000)
        await create(shop, "ONCE", per_customer_limit=1, kind="fixed", value=500)
        for code, why in [("OLD", "has expired"), ("SOON", "is not active yet"),
                          ("BIG", "needs 10000 cents"), ("NOPE", "unknown promotion code")]:
            status, body = await shop.place("cy", [(SKU, 1)], promotion_code=code)
            assert status == 422, body
            assert why in body["error"]["message"]
            assert body["error"]["details"][0]["field"] == "promotion_code"
        status, body = await shop.place("cy", [(SKU, 1)], promotion_code="once")
        assert status == 201
        order = await shop.settled("cy", body["id"])
        assert (order["status"], order["discount_cents"], order["total_cents"]) == (
            "confirmed", 500, 1500)
        assert await used(shop, "ONCE", 1) == 1
        status, body = await shop.place("cy", [(SKU, 1)], promotion_code="ONCE")
        assert status == 422 and "already used 1 time" in body["error"]["message"]

        # Anyone sees active codes without their counters; scheduled and expired are hidden.
        status, listing = await shop.call("GET", "/api/promotions")
        assert status == 200
        assert {p["code"] for p in listing["items"]} == {"BIG", "ONCE"}
        assert all("used" not in p or p["used"] is None for p in listing["items"])
        assert (await shop.call("GET", "/api/promotions/SOON"))[0] == 404
        _, everything = await shop.call("GET", "/api/promotions", headers=ADMIN)
        assert {p["code"]: p["status"] for p in everything["items"]} == {
            "BIG": "active", "ONCE": "active", "OLD": "expired", "SOON": "scheduled"}

        # Admins change and delete codes; customers may not.
        status, _ = await shop.call("POST", "/api/promotions", headers=customer("cy"),
                                    json={"code": "MINE", "kind": "fixed", "value": 1})
        assert status == 403
        status, _ = await shop.call("POST", "/api/promotions", headers=ADMIN,
                                    json={"code": "big", "kind": "fixed", "value": 1})
        assert status == 409
        status, changed = await shop.call("PATCH", "/api/promotions/big", headers=ADMIN,
                                          json={"min_order_cents": 0, "value": 50})
        assert status == 200 and (changed["min_order_cents"], changed["value"]) == (0, 50)
        status, bad = await shop.call("PATCH", "/api/promotions/big", headers=ADMIN,
                                      json={"value": 500})
        assert status == 422 and "would not be valid" in bad["error"]["message"]
        status, _ = await shop.call("DELETE", "/api/promotions/big", headers=ADMIN)
        assert status == 200
        status, body = await shop.place("dee", [(SKU, 1)], promotion_code="BIG")
        assert status == 422 and "unknown promotion code" in body["error"]["message"]


async def test_a_worker_never_reads_an_older_version_of_a_code_again(
        workers: WorkerFactory) -> None:
    """The worker writing the global table also reads its changelog: its own older records
    must not put an older version back over one it already shows (each PATCH below writes a
    value no other write has, so seeing a value again after another one is going back)."""
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await create(shop, "FLIP", kind="fixed", value=1)
        seen: list[int] = []
        answers: Counter[int] = Counter()
        writing = True

        async def watch() -> None:
            while writing:
                status, row = await shop.call("GET", "/api/promotions/FLIP", headers=ADMIN)
                assert status == 200, (status, row)
                if not seen or seen[-1] != row["value"]:
                    seen.append(row["value"])
                await asyncio.sleep(0.015)  # under the API's rate limit of 100 a second

        async def patch(value: int) -> None:
            status, _ = await shop.call("PATCH", "/api/promotions/flip", headers=ADMIN,
                                        json={"value": value})
            answers[status] += 1

        watcher = asyncio.create_task(watch())
        for burst in range(6):
            await asyncio.gather(*(patch(2 + burst * 10 + i) for i in range(10)))
        writing = False
        await watcher
        # Each answer waits for its change or a later one to show (not for a clock).
        assert answers == {200: 60}, answers
        assert len(seen) > 6, seen
        went_back = [value for i, value in enumerate(seen) if value in seen[:i]]
        assert went_back == [], f"read older versions again: {seen}"

        status, _ = await shop.call("DELETE", "/api/promotions/FLIP", headers=ADMIN)
        assert status == 200
        for _ in range(20):
            assert (await shop.call("GET", "/api/promotions/FLIP", headers=ADMIN))[0] == 404
            await asyncio.sleep(0.01)
