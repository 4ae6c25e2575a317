"""The order saga end to end: orders/s from POST /api/orders to confirmed, and latency.

A real shop worker on the bench broker; products with ample stock; customers POST orders
paid with ``pm_card_ok``. A raw consumer of the ``orders`` topic sees each ``order_confirmed``
notice, so an order's time runs from just before its POST to the moment its confirmation is
read. Two runs: saturated (``concurrency`` requests in flight) for the rate, then open loop at
half the *sustained* rate for latency percentiles.

Two rates come out of the saturated run. *Confirmed* is orders over the time until the last
confirmation: the saga's own pace. *Sustained* is orders over the time until the worker has
done everything the orders caused (the notices, the indexes, the analytics and mail hops
run after the confirmation): the pace the worker can keep up, judged by its CPU falling to
idle (below IDLE_SHARE of a core over IDLE_WINDOW_S; an idle worker uses ~17% polling the
broker). The latency run starts on that idle worker, at half the sustained rate: half the
confirmed rate would be more than the worker keeps up with, and its backlog would be
measured instead of its latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.errors import BenchError
from bench.kafka_raw import count_messages, grown
from bench.relay import HOPS, measure_relay
from bench.report import ADMIN, UNLIMITED, PhaseResult, say
from bench.shop_agent import _require_rabbitmq, _wait_ready
from config.settings import DEV_JWT_SECRET
from scripts.devstack import Broker, broker_env, start_worker
from web.tokens import issue_access_token

__all__ = ["Confirmations", "add_products", "bench_sku", "measure_saga"]

PRODUCTS = 50
#: The steady rate of the goal's low-load latency (orders/s).
STEADY_RATE = 20
#: How long the reader of confirmations lets Tansu hold a fetch that finds nothing.
READER_WAIT_MS = 20
#: A worker using less than this share of a core over IDLE_WINDOW_S has worked off its backlog.
IDLE_SHARE = 0.3
IDLE_WINDOW_S = 1.0
#: The bench's customers, signed as the worker it starts signs (the development JWT secret).
CUSTOMERS = [{"Authorization": "Bearer " + issue_access_token(
    f"bench-customer-{n}", ["customer"], secret=DEV_JWT_SECRET, ttl=3600)} for n in range(500)]


class Confirmations:
    """Reads the orders topic and notes when each order's confirmation arrives."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Confirmations:
        consumer = AIOKafkaConsumer("orders", bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    fetch_max_wait_ms=READER_WAIT_MS)
        await consumer.start()
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=50)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        if b'"order_confirmed"' in record.value:
                            self.seen.setdefault(json.loads(record.value)["order_id"], now)
        finally:
            await consumer.stop()

    async def wait_for(self, order_ids: list[str], deadline: float) -> None:
        """Wait until every order in ``order_ids`` is confirmed."""
        while any(oid not in self.seen for oid in order_ids):
            if time.monotonic() > deadline:
                missing = sum(oid not in self.seen for oid in order_ids)
                raise BenchError(f"{missing:,} orders were not confirmed in time")
            await asyncio.sleep(0.05)


async def _place(http: aiohttp.ClientSession, url: str, n: int, rng: random.Random,
                 products: int = PRODUCTS) -> str:
    body = {"items": [{"sku": bench_sku("BENCH", rng.randrange(products)), "quantity": 1}],
            "payment_method": "pm_card_ok"}
    async with http.post(url + "/api/orders", json=body,
                         headers=CUSTOMERS[n % len(CUSTOMERS)]) as response:
        if response.status not in (201, 202):  # 202: not applied within SHOP_WRITE_WAIT_S
            raise BenchError(f"POST /api/orders answered {response.status}: "
                             f"{await response.text()}")
        return str((await response.json())["id"])


async def _saturated(http: aiohttp.ClientSession, url: str, confirmations: Confirmations,
                     orders: int, concurrency: int, deadline: float,
                     products: int = PRODUCTS) -> tuple[float, list[float]]:
    rng = random.Random(3)
    limit = asyncio.Semaphore(concurrency)
    started: dict[str, float] = {}

    async def one(n: int) -> None:
        async with limit:
            t0 = time.perf_counter()
            started[await _place(http, url, n, rng, products)] = t0

    first = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(orders)))
    await confirmations.wait_for(list(started), deadline)
    last = max(confirmations.seen[oid] for oid in started)
    return last - first, [confirmations.seen[oid] - t0 for oid, t0 in started.items()]


async def _open_loop(http: aiohttp.ClientSession, url: str, confirmations: Confirmations,
                     rate: float, seconds: float, deadline: float,
                     products: int = PRODUCTS) -> tuple[list[float], list[float]]:
    """Place orders at ``rate`` for ``seconds``; return each order's time from its POST to its
    confirmation, and each POST's own time (until the order and its customer's list are
    visible: the 201)."""
    rng = random.Random(4)
    started: dict[str, float] = {}
    posts: list[float] = []
    tasks = []

    async def one(n: int) -> None:
        t0 = time.perf_counter()
        order_id = await _place(http, url, n, rng, products)
        posts.append(time.perf_counter() - t0)
        started[order_id] = t0

    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    await confirmations.wait_for(list(started), deadline)
    return [confirmations.seen[oid] - t0 for oid, t0 in started.items()], posts


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) process ``pid`` has used, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_until_idle(pid: int, deadline: float) -> float:
    """Wait until process ``pid`` idles (IDLE_SHARE over IDLE_WINDOW_S); return when it began."""
    used = cpu_seconds(pid)
    while True:
        began = time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW_S)
        now = cpu_seconds(pid)
        if now - used < IDLE_SHARE * IDLE_WINDOW_S:
            return began
        if time.monotonic() > deadline:
            raise BenchError("the saga worker did not work off its backlog in time")
        used = now


def bench_sku(prefix: str, n: int) -> str:
    """Return the sku of the bench's ``n``-th product (``<prefix>-0007``)."""
    return f"{prefix}-{n:04d}"


async def add_products(http: aiohttp.ClientSession, urls: list[str], prefix: str, count: int,
                       *, price_cents: int) -> None:
    """Create ``count`` products with ample stock through the first worker; wait until the
    catalog of every worker lists them."""
    for n in range(count):
        product = {"sku": bench_sku(prefix, n), "name": f"Bench product {n}",
                   "category": "bench", "price_cents": price_cents,
                   "initial_stock": 10_000_000}
        async with http.post(urls[0] + "/api/products", json=product,
                             headers=ADMIN) as response:
            if response.status != 201:
                raise BenchError(f"POST /api/products: {response.status} "
                                 f"{(await response.text())[:200]}")
    for url in urls:
        while True:
            async with http.get(url + "/api/products?per_page=1") as response:
                if (await response.json())["total"] == count:
                    break
            await asyncio.sleep(0.1)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_saga(broker: Broker, workdir: Path, rabbit_url: str, orders: int,
                       concurrency: int, latency_seconds: float,
                       deadline: float, products: int = PRODUCTS) -> list[PhaseResult]:
    """Return the saturated saga rate and the latency at half that rate, the orders spread
    over ``products`` skus (1: every order on one sku, a flash sale)."""
    _require_rabbitmq(rabbit_url)
    spawned = time.monotonic()
    worker = start_worker("bench-saga", broker_env(broker), rabbit_url, workdir,
                          extra_env=UNLIMITED)
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=concurrency + 8)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await _wait_ready(http, worker)
            startup = time.monotonic() - spawned
            await add_products(http, [worker.url], "BENCH", products, price_cents=100)
            say(f"saga: worker ready in {startup:.1f} s, {products} products; "
                f"{orders:,} orders with {concurrency} in flight")
            async with Confirmations(broker.bootstrap) as confirmations:
                # A short warm-up so that first-request costs are not measured.
                await _saturated(http, worker.url, confirmations, 50, concurrency, deadline,
                                 products)
                assert worker.process is not None
                pid = worker.process.pid
                await wait_until_idle(pid, deadline)
                written, _ = await count_messages(broker.bootstrap, skip_prefix="bench-")
                began = time.perf_counter()
                cpu_before = cpu_seconds(pid)
                seconds, saturated = await _saturated(http, worker.url, confirmations, orders,
                                                      concurrency, deadline, products)
                drained = await wait_until_idle(pid, deadline) - began
                cpu_used = cpu_seconds(pid) - cpu_before
                messages = grown(written, (await count_messages(
                    broker.bootstrap, skip_prefix="bench-"))[0])
                rate, sustained = orders / seconds, orders / drained
                say(f"saga: {rate:,.0f} orders/s confirmed, {sustained:,.0f}/s sustained "
                    f"(everything done {drained:.1f} s after the first order; "
                    f"{cpu_used / orders * 1000:.1f} ms of worker CPU an order); latency at "
                    f"half the sustained rate ({sustained / 2:,.0f}/s) for "
                    f"{latency_seconds:.0f} s")
                latencies, _ = await _open_loop(http, worker.url, confirmations, sustained / 2,
                                                latency_seconds, deadline, products)
                await wait_until_idle(pid, deadline)
                say(f"saga: latency at {STEADY_RATE} orders/s for {latency_seconds:.0f} s")
                steady, steady_posts = await _open_loop(
                    http, worker.url, confirmations, STEADY_RATE, latency_seconds, deadline,
                    products)
    finally:
        await asyncio.to_thread(worker.stop)
    say(f"saga: raw aiokafka through the same {HOPS} hops at {STEADY_RATE}/s for "
        f"{latency_seconds:.0f} s (the broker's floor)")
    relay = await measure_relay(broker.bootstrap, STEADY_RATE, latency_seconds,
                                reader_wait_ms=READER_WAIT_MS)
    ms = 1000.0
    return [
        PhaseResult("saga end to end, saturated (POST -> confirmed)", orders, seconds,
                    startup_seconds=startup,
                    extra={"concurrency": concurrency, "products": products,
                           "p50_ms": round(_percentile(saturated, 0.5) * ms, 1),
                           "p99_ms": round(_percentile(saturated, 0.99) * ms, 1),
                           "sustained_orders_per_s": round(sustained, 1),
                           "worker_cpu_ms_per_order": round(cpu_used / orders * ms, 2),
                           **messages_per_order(messages, orders)}),
        PhaseResult("saga at half the sustained rate (latency)", len(latencies),
                    latency_seconds,
                    extra={"rate": round(sustained / 2, 1),
                           "p50_ms": round(_percentile(latencies, 0.5) * ms, 1),
                           "p99_ms": round(_percentile(latencies, 0.99) * ms, 1),
                           "steady_rate": STEADY_RATE,
                           "steady_p50_ms": round(_percentile(steady, 0.5) * ms, 1),
                           "steady_p99_ms": round(_percentile(steady, 0.99) * ms, 1),
                           "steady_post_p50_ms": round(_percentile(steady_posts, 0.5) * ms, 1),
                           "steady_post_p99_ms": round(_percentile(steady_posts, 0.99) * ms,
                                                       1),
                           "relay_hops": HOPS,
                           "relay_p50_ms": round(_percentile(relay, 0.5) * ms, 1),
                           "relay_p99_ms": round(_percentile(relay, 0.99) * ms, 1)}),
    ]


#: The saga's own topics and tables: what an order needs, before the readers of its notices.
SAGA_TOPICS = frozenset({"orders", "inventory", "payments", "user-orders",
                         *(f"shopstream-{table}-changelog" for table in (
                             "orders", "stock", "open-orders", "orders-by-user"))})


def messages_per_order(messages: dict[str, int], orders: int) -> dict[str, Any]:
    """Return the Kafka messages the worker wrote an order: all, the saga's own, changelogs."""
    def per_order(count: int) -> float:
        return round(count / orders, 2)

    return {"messages_per_order": per_order(sum(messages.values())),
            "saga_messages_per_order": per_order(
                sum(n for topic, n in messages.items() if topic in SAGA_TOPICS)),
            "changelog_messages_per_order": per_order(
                sum(n for topic, n in messages.items() if topic.endswith("-changelog"))),
            "messages_by_topic": messages}
