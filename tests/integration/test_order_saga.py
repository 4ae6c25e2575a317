"""The order saga on a real broker and worker: hundreds of concurrent orders, scarce stock.

Afterwards every order has settled, no sku is oversold, stock is conserved
(initial + restocked = available + reserved + sold), and the money adds up (charged minus
refunded = the totals of the paid orders). Then every topic is replayed from the start into
the agents and nothing changes.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.metrics import samples_by
from tests.integration.saga import place_many, settled_state, shop_state
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

SKUS = {f"SCARCE-{n:02d}": stock for n, stock in enumerate([3, 8, 20, 40, 60, 80, 100, 120])}
ORDERS = 240
CUSTOMERS = 60


async def check_customer_lists(shop: Shop, placed: list[tuple[str, str]],
                               orders: dict[str, Any]) -> None:
    """Each customer's GET /api/orders lists exactly their orders, newest first."""
    for user in ("customer-0", "customer-1"):
        mine = {oid for u, oid in placed if u == user}
        status, body = await shop.call("GET", "/api/orders?per_page=50", headers=customer(user))
        assert status == 200, body
        assert body["total"] == len(mine)
        assert {o["id"] for o in body["items"]} == mine
        assert all(o["status"] == orders[o["id"]]["status"] for o in body["items"])
        placed_at = [o["history"][0]["at"] for o in body["items"]]
        assert placed_at == sorted(placed_at, reverse=True)
    status, body = await shop.call("GET", "/api/orders?user_id=customer-0&per_page=1",
                                   headers=ADMIN)
    assert (status, body["total"]) == (200, sum(u == "customer-0" for u, _ in placed))


class FaustNamedAssignor(RoundRobinPartitionAssignor):
    """A round-robin assignor under the protocol name the shop's group uses."""

    name = "faust"


async def replay_everything(worker: Worker, workers: WorkerFactory) -> None:
    """Stop the worker, rewind its consumer group to the start of every topic, restart it.

    Tansu takes offset commits from group members only, so the rewind joins the (then empty)
    group for a moment, under the name of Faust's assignment protocol as the group expects.
    """
    worker.stop()
    topics = ("orders", "inventory", "payments")
    consumer = AIOKafkaConsumer(bootstrap_servers=workers.broker.bootstrap,
                                group_id="shopstream", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1500,
                                partition_assignment_strategy=(FaustNamedAssignor,))
    await consumer.start()
    try:
        consumer.subscribe(topics=list(topics))
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        assert {tp.topic for tp in consumer.assignment()} == set(topics)
        await consumer.commit(dict.fromkeys(consumer.assignment(), 0))
    finally:
        await consumer.stop()
    await asyncio.to_thread(workers.restart(worker).wait_ready)


async def test_concurrent_orders_never_oversell_and_a_replay_changes_nothing(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1", SHOP_ORDER_TTL="60")
    await asyncio.to_thread(worker.wait_ready)
    rng = random.Random(7)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        for sku, units in SKUS.items():
            await shop.add_product(sku, units)
        await shop.wait_for_catalog(len(SKUS))

        placed = await place_many([shop], list(SKUS), ORDERS, CUSTOMERS, rng)
        # Customers cancel some orders while the saga runs, and an admin restocks one sku.
        cancelled = []
        for user, oid in rng.sample(placed, 20):
            status, _ = await shop.call("POST", f"/api/orders/{oid}/cancel",
                                        headers=customer(user))
            if status in (200, 202):
                cancelled.append((user, oid))
        status, _ = await shop.call("POST", "/api/inventory/SCARCE-00/restock", headers=ADMIN,
                                    json={"quantity": 4})
        assert status == 200
        restocked = Counter({"SCARCE-00": 4})

        # An accepted cancel ends its order (cancelled, or ended otherwise first), not at once.
        for user, oid in cancelled:
            await shop.ended(user, oid)
        before = await settled_state(shop, placed, SKUS, restocked)
        await check_customer_lists(shop, placed, before["orders"])
        statuses = Counter(o["status"] for o in before["orders"].values())
        print(f"{ORDERS} orders settled: {dict(statuses)}")
        assert statuses["confirmed"] > 0 and statuses["rejected"] > 0

    await replay_everything(worker, workers)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await asyncio.sleep(3)  # let the replayed events through
        after = await shop_state(shop, placed, list(SKUS))
        async with http.get(f"{worker.url}/metrics") as response:
            metrics = await response.text()
    assert after == before
    # The restarted worker really processed the old events again, and skipped each one (an
    # order's row keeps its payment: the payments topic's replays are the orders table's).
    skipped = {table: replays_skipped(metrics, table) for table in ("orders", "stock")}
    print(f"replayed events skipped: {skipped}")
    assert all(count > 0 for count in skipped.values()), skipped


def replays_skipped(metrics: str, table: str) -> float:
    """Return the replays (redelivered offsets) ``table`` skipped, from /metrics text."""
    return sum(value for name, value in samples_by(
        metrics, "shop_replays_skipped_total", "table", reason="replay").items()
        if name.endswith(table))
