"""An order whose payment takes longer than SHOP_ORDER_TTL expires, releases its stock, and
the late charge is refunded; the orders topic carries that order's events and nothing else."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import consume_until, produce
from tests.integration.shop import Shop, customer

pytestmark = pytest.mark.integration


#: An expiry sweep as older workers wrote it to each orders partition (every second).
OLD_SWEEP = (b'{"type":"expiry_sweep","event_id":"71d8f99ce4264e979811cdc1ecc4a59c",'
             b'"occurred_at":"2026-12-06T20:58:02.056152Z","correlation_id":"sweep-0",'
             b'"schema_version":1,"partition":0}')


async def test_a_slow_payment_expires_the_order_and_is_refunded(workers: WorkerFactory) -> None:
    worker = workers.start("w1", SHOP_ORDER_TTL="2", SHOP_PAYMENT_SLOW_SECONDS="5")
    await asyncio.to_thread(worker.wait_ready)
    bootstrap = workers.broker.bootstrap
    # Left on the topic by a worker of the version before: passed over, not dead-lettered.
    await produce(bootstrap, "orders", [("sweep-0", OLD_SWEEP)])
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product("SLOW-0001", 4)
        await shop.wait_for_catalog(1)
        status, body = await shop.place("carol", [("SLOW-0001", 3)], "pm_card_slow")
        assert status == 201
        order = await shop.settled("carol", body["id"])
        assert order["status"] == "expired"
        assert [h["status"] for h in order["history"]] == ["placed", "reserved", "expired"]
        assert await available_soon(shop, "SLOW-0001", 4)  # released on expiry

        # The provider answers after 5 s: the charge that arrives late is given back.
        deadline = time.monotonic() + 20
        payment: dict[str, object] = {}
        while time.monotonic() < deadline and payment.get("status") != "refunded":
            _, payment = await shop.call("GET", f"/api/payments/{body['id']}",
                                            headers=customer("carol"))
            await asyncio.sleep(0.3)
        assert payment["status"] == "refunded"
        assert payment["refunded_cents"] == payment["amount_cents"] == order["total_cents"]
        stock = await shop.stock("SLOW-0001")
        assert (stock["available"], stock["reserved"], stock["sold"]) == (4, 0, 0)

    # Each worker looks for its overdue orders itself: in the ~10 s of this test the topic got
    # the order's own events (placed, answers, expiry, notices) and no message per partition.
    records = await consume_until(bootstrap, "orders", 1_000, within=3.0)
    keys = [record.key for record in records if record.value != OLD_SWEEP]
    assert set(keys) == {body["id"].encode()}, keys
    assert await consume_until(bootstrap, "dead-letters", 1, within=3.0) == []


async def available_soon(shop: Shop, sku: str, units: int, within: float = 10.0) -> bool:
    """Return True once ``sku`` has ``units`` available (the release is asynchronous)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await shop.stock(sku))["available"] == units:
            return True
        await asyncio.sleep(0.2)
    return False
