"""Two workers run the saga; one is killed with SIGKILL mid-run and restarted, and RabbitMQ is
stopped and started again in the same run.

Orders keep coming through whichever worker answers (retried with the same Idempotency-Key);
every fifth uses a promotion code, whose redemptions are announced on RabbitMQ. b commits
rarely, and the kill comes 1 s into placing them, once b has written order rows, so it always
hits uncommitted work. Then RabbitMQ is stopped for 3 s, so the saga and the failover of b's
partitions to a run through the outage. b is started again only once a has taken its
partitions over and its guards have skipped replayed events (both asserted; 7 s after b's
death at the earliest). Afterwards every order has settled, nothing is oversold or held,
stock is conserved, the money adds up, no customer was notified twice of the same thing,
every redemption was announced once (a duplicate delivery carries the same message id), and
both workers answer every keyed read the same. The workers use a RabbitMQ node of this
test's own (see tests/integration/rabbit.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import records_of_key
from tests.integration.metrics import (
    VICTIM_COMMIT_INTERVAL,
    Takeover,
    kill_once_working,
    sample,
)
from tests.integration.rabbit import PrivateRabbit, bind_promotion_events, promotion_messages
from tests.integration.saga import place_many, settled_state, shop_state
from tests.integration.shop import ADMIN, Shop, customer, is_settled

pytestmark = [pytest.mark.integration, pytest.mark.crash]

#: Orders per run (SHOP_CRASH_ORDERS to change it).
ORDERS = int(os.environ.get("SHOP_CRASH_ORDERS", "2000"))
#: Stock per sku: one scarce sku (orders are rejected), the others scaled to the orders so
#: that about half the orders are paid (an order asks for about four units).
SKUS = {f"CRASH-{n:02d}": stock if n == 0 else stock * ORDERS // 1000
        for n, stock in enumerate([40, 300, 500, 700, 900, 1100])}
CUSTOMERS = 80
CODE = "CRASH10"
EVERY = 5  # every fifth order uses the code
#: Unsettled orders whose records a failure prints (each reads five topics through).
MAX_EXPLAINED = 8
#: A record line of records_of_key: "orders[1]@323: b'...'".
RECORD = re.compile(r"(?P<topic>[\w.-]+)\[(?P<partition>\d+)\]@(?P<offset>\d+):")


# 2,000 orders, each answered once its customer's list has it, through a worker that is killed
# and a group that rebalances twice: 100-200 s on two shared cores, more beside other work.
@pytest.mark.timeout(600)
async def test_a_worker_killed_mid_saga_leaves_every_invariant_intact(
    workers: WorkerFactory, private_rabbit: PrivateRabbit,
) -> None:
    await bind_promotion_events(private_rabbit.url)
    a = workers.start("a", SHOP_RABBIT_URL=private_rabbit.url, SHOP_LOG_COMMITS="on")
    # b commits rarely: what it processes before the kill is all uncommitted, so a reads it
    # again and the guards must skip it (asserted below).
    b = workers.start("b", SHOP_RABBIT_URL=private_rabbit.url, SHOP_LOG_COMMITS="on",
                      SHOP_COMMIT_INTERVAL=VICTIM_COMMIT_INTERVAL)
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        shop_a, shop_b = Shop(http, a.url), Shop(http, b.url)
        for sku, units in SKUS.items():
            await shop_a.add_product(sku, units)
        status, body = await shop_a.call("POST", "/api/promotions", headers=ADMIN, json={
            "code": CODE, "kind": "percent", "value": 10})
        assert status in (201, 202), body
        await shop_a.wait_for_catalog(len(SKUS))
        await shop_b.wait_for_catalog(len(SKUS))
        await _wait_for_code(shop_b)

        started = time.monotonic()
        placing = asyncio.create_task(
            place_many([shop_a, shop_b], list(SKUS), ORDERS, CUSTOMERS, random.Random(11),
                       in_flight=20, promotion=(CODE, EVERY)))
        await asyncio.sleep(1.0)
        on_a: list[Takeover] = []

        async def read_a() -> None:
            on_a.append(await Takeover.read(http, a.url, "orders"))

        written = await kill_once_working(http, b, orders_written, before_kill=read_a)
        killed = time.monotonic()
        print(f"killed b while orders were being placed, after it had written {written:.0f} "
              "order rows (none of their events committed)")
        await asyncio.to_thread(private_rabbit.stop_app)
        print(f"RabbitMQ stopped at {time.monotonic() - started:.1f} s")
        # A worker keeps serving through the outage (what it publishes waits in the outbox).
        ready = await _degraded(shop_a)
        assert ready["rabbitmq"].get("degraded"), ready
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_rabbit.start_app)
        print(f"RabbitMQ started again at {time.monotonic() - started:.1f} s")
        # b comes back once the group has noticed its death (the 6 s session timeout) and a
        # has taken its partitions over and skipped replayed events: a member rejoining under
        # its old self's shadow only makes the rebalance longer, and may get its partitions
        # back with no take-over (a's skips would then be duplicates the new b sends).
        await asyncio.sleep(max(0.0, killed + 7.0 - time.monotonic()))
        took = await Takeover.after(http, a.url, on_a[0])
        print(f"a {time.monotonic() - killed:.1f} s after the kill: {took.describe()}")
        assert took.taken_over > 0 and took.skipped  # (Takeover.after waits for both)
        # The long commit interval was for the kill: the restarted b commits as a worker does.
        del b.env["SHOP_COMMIT_INTERVAL"]
        await asyncio.to_thread(workers.restart(b).wait_ready, 120.0)
        print(f"b ready again at {time.monotonic() - started:.1f} s")
        placed = await placing
        print(f"all {ORDERS} orders accepted {time.monotonic() - started:.1f} s after the "
              "first")

        try:
            state = await settled_state(shop_a, placed, SKUS, {})
        except AssertionError:
            await _explain_unsettled(workers, [shop_a, shop_b], placed)
            raise
        statuses: dict[str, int] = {}
        for order in state["orders"].values():
            statuses[order["status"]] = statuses.get(order["status"], 0) + 1
        print(f"{len(placed)} orders settled after the kill: {statuses}")
        assert statuses.get("confirmed", 0) > 0
        takeover = (await Takeover.read(http, a.url, "orders")).since(on_a[0])
        print(f"a since the kill: {takeover.describe()}")

        # Every order with the code was redeemed and announced once, across the kill and the
        # outage: distinct message ids, one per order.
        with_code = {oid for oid, order in state["orders"].items()
                     if order.get("promotion_code") == CODE}
        assert len(with_code) == ORDERS // EVERY
        # promotion.created and .activated, then one promotion.redeemed per order
        announced = await promotion_messages(private_rabbit.url, 2 + len(with_code), within=60)
        redeemed = Counter(body["order_id"] for body in announced.values()
                           if body["type"] == "promotion.redeemed")
        print(f"{sum(redeemed.values())} promotion.redeemed announcements for "
              f"{len(with_code)} orders with the code")
        missing = {oid: state["orders"][oid] for oid in with_code - set(redeemed)}
        assert not missing, f"redemptions never announced: {missing}"
        assert set(redeemed) == with_code and set(redeemed.values()) == {1}

        # No customer was told the same thing twice.
        for n in range(CUSTOMERS):
            status, inbox = await shop_a.call("GET", "/api/notifications?limit=200",
                                              headers=customer(f"customer-{n}"))
            assert status == 200, inbox
            told = Counter((item["kind"], item["link"]) for item in inbox["items"])
            assert not [k for k, times in told.items() if times > 1], (n, told)

        # The restarted worker answers the same for every order and sku (routed reads).
        assert await shop_state(shop_b, placed, list(SKUS)) == state


def orders_written(metrics: str) -> float:
    """Return the order rows a worker has written (its saga is at work)."""
    return sample(metrics, "shop_table_operations_total", table="table.orders",
                  operation="keys_updated")


async def _explain_unsettled(workers: WorkerFactory, shops: list[Shop],
                             placed: list[tuple[str, str]]) -> None:
    """Print what each worker and the broker hold of every order that has not settled
    (for the first MAX_EXPLAINED of them), with what the workers' logs say of each of its
    records' offsets (commits past it, the consumer's guards), and each worker's readiness
    (with the partitions it does not fetch)."""
    for shop in shops:
        print(f"---- {shop.url}/ready:", await shop.call("GET", "/ready"))
    explained = 0
    for user, order_id in placed:
        if explained >= MAX_EXPLAINED:
            print(f"(only the first {MAX_EXPLAINED} unsettled orders are shown)")
            return
        status, body = await shops[0].call("GET", f"/api/orders/{order_id}",
                                           headers=customer(user))
        if is_settled(status, body):
            continue
        explained += 1
        print(f"---- order {order_id} of {user}: {status} {body}")
        for shop in shops[1:]:
            print(f"  {shop.url}:", await shop.call("GET", f"/api/orders/{order_id}",
                                                    headers=customer(user)))
        topics = ["orders", "payments", "shopstream-orders-changelog",
                  "shopstream-open-orders-changelog"]
        for line in await records_of_key(workers.broker.bootstrap, topics, order_id,
                                         mentioning=["inventory", "dead-letters"]):
            print("  " + line)  # inventory: keyed by sku
            record = RECORD.match(line)
            if record and record["topic"] in ("orders", "payments"):
                for said in workers.offset_trail(record["topic"], int(record["partition"]),
                                                 int(record["offset"])):
                    print("    " + said)


async def _degraded(shop: Shop, within: float = 15.0) -> dict[str, Any]:
    """Return ``/ready`` once it shows RabbitMQ lost (asserting it stays 200 meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        status, ready = await shop.call("GET", "/ready")
        assert status == 200, ready
        if ready["rabbitmq"].get("degraded") or time.monotonic() > deadline:
            return dict(ready)
        await asyncio.sleep(0.2)


async def _wait_for_code(shop: Shop, within: float = 20.0) -> None:
    """Wait until ``shop`` prices with the code (every worker reads a copy of it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status, body = await shop.call("GET", f"/api/promotions/{CODE}")
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{CODE} never reached {shop.url}: {status} {body}")
