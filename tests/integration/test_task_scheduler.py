"""The scheduler in a real worker on its own RabbitMQ: the tasks run, the daily report and the
popular products are made, /api/admin/tasks shows them, and an outage loses no task."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp
import pytest

from models.base import utcnow
from models.tasks import ATTEMPT_HEADER, TASK_HEADER
from rabbit_bridge.tasks import PERIOD_HEADER
from rabbit_bridge.topology import TASKS_EXCHANGE, declare_exchange
from tests.integration.fixtures import WorkerFactory
from tests.integration.rabbit import PrivateRabbit
from tests.integration.shop import ADMIN, Shop

pytestmark = pytest.mark.integration

TASK_NAMES = {"promotion-windows", "daily-report", "popularity"}
#: The example of a periodic task (run every second or two here).
PROMOTION_WINDOWS = "promotion-windows"
TAP = "test.promotion-windows-published"


async def publish_daily_report(url: str, day: str) -> None:
    """Publish the daily-report run whose period starts the day after ``day`` (as cron would)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1, minutes=5)
    period = f"daily-report:{start.isoformat().replace('+00:00', 'Z')}"
    body = {"task": "daily-report", "period": period, "period_start": start.isoformat()}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("shop.tasks")
        await exchange.publish(aio_pika.Message(
            json.dumps(body).encode(), message_id=period, content_type="application/json",
            headers={TASK_HEADER: "daily-report", PERIOD_HEADER: period, ATTEMPT_HEADER: 1}),
            "daily-report", mandatory=True)


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 30.0) -> Any:
    """Return the first truthy result of ``check()``, polling for ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def test_tasks_run_and_report_on_a_real_worker(workers: WorkerFactory,
                                                     private_rabbit: PrivateRabbit) -> None:
    worker = workers.start("w1", SHOP_RABBIT_URL=private_rabbit.url, SHOP_ORDER_TTL="3",
                           SHOP_PAYMENT_SLOW_SECONDS="6", SHOP_TASK_POPULARITY_EVERY="1",
                           SHOP_TASK_PROMOTION_WINDOWS_EVERY="1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product("POP-A", 50, price_cents=1000)
        await shop.add_product("POP-B", 50, price_cents=250)
        await shop.wait_for_catalog(2)
        placed = [await shop.place("dana", [("POP-A", 2), ("POP-B", 1)]),
                  await shop.place("erin", [("POP-B", 4)]),
                  await shop.place("finn", [("POP-A", 1)], "pm_card_slow")]
        settled = [await shop.settled(user, body["id"])
                   for user, (_, body) in zip(("dana", "erin", "finn"), placed, strict=True)]
        statuses = [order["status"] for order in settled]
        assert statuses == ["confirmed", "confirmed", "expired"], "the expiry looked"

        today = utcnow().date().isoformat()

        async def live() -> Any:
            status, body = await shop.call("GET", f"/api/admin/reports/daily?day={today}",
                                           headers=ADMIN)
            return status == 200 and sum(s["orders"] for s in body["orders_by_status"].values()
                                         ) == 3

        await eventually(live)  # every notice is counted; now the report of the day
        await publish_daily_report(private_rabbit.url, today)

        async def report() -> Any:
            status, body = await shop.call("GET", f"/api/admin/reports/daily?day={today}",
                                           headers=ADMIN)
            return body if status == 200 and body["generated_at"] else None

        made = await eventually(report)
        print(f"daily report: {made}")
        assert made["confirmed_orders"] == 2 and made["revenue_cents"] == 2250 + 1000
        assert made["orders_by_status"]["expired"] == {"orders": 1, "cents": 1000}
        assert made["units_by_sku"] == {"POP-A": 2, "POP-B": 5}

        async def popular() -> Any:
            _, body = await shop.call("GET", "/api/reports/popular")
            return body if len(body["items"]) == 2 else None

        assert (await eventually(popular))["items"] == [{"sku": "POP-B", "units": 5},
                                                       {"sku": "POP-A", "units": 2}]

        status, body = await shop.call("GET", "/api/admin/tasks")
        assert status == 401
        status, body = await shop.call("GET", "/api/admin/tasks", headers=ADMIN)
        assert status == 200, body
        tasks = {task["name"]: task for task in body["tasks"]}
        print(json.dumps({name: {k: t[k] for k in ("queued", "retrying", "dead", "done",
                                                     "failures", "next_run")}
                          for name, t in tasks.items()}, indent=1))
        assert set(tasks) == TASK_NAMES
        for name in TASK_NAMES:
            assert tasks[name]["done"] >= 1 and tasks[name]["failures"] == 0
            assert tasks[name]["last_run"]["outcome"] == "done"
            assert tasks[name]["dead"] == 0 and isinstance(tasks[name]["queued"], int)

        async def four_periods() -> Any:  # one a second: how many so far depends on the pace
            _, body = await shop.call("GET", "/api/admin/tasks", headers=ADMIN)
            mine = {task["name"]: task for task in body["tasks"]}[PROMOTION_WINDOWS]
            return (mine["published_here"] or {}).get("periods", 0) >= 4

        assert await eventually(four_periods), "the leader publishes, period after period"
        assert tasks["daily-report"]["schedule"] == "cron 5 0 * * * (UTC)"
        assert tasks["daily-report"]["next_run"].endswith("T00:05:00+00:00")


async def test_a_rabbitmq_outage_loses_no_scheduled_task(workers: WorkerFactory,
                                                         private_rabbit: PrivateRabbit) -> None:
    # Every period the leader publishes is copied to a queue of the test's own, bound before
    # the worker starts: the set of periods published, outage and outbox included.
    await tap_published_runs(private_rabbit.url, PROMOTION_WINDOWS)
    # Two periods a second: some wait in the outbox during the outage, and the runs the
    # outbox releases at once stay within the runs a worker remembers (RECENT_RUNS).
    worker = workers.start("w1", SHOP_RABBIT_URL=private_rabbit.url,
                           SHOP_TASK_PROMOTION_WINDOWS_EVERY="0.5")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)

        async def promotion_windows() -> dict[str, Any]:
            _, body = await shop.call("GET", "/api/admin/tasks", headers=ADMIN)
            return next(t for t in body["tasks"] if t["name"] == PROMOTION_WINDOWS)

        done: set[str] = set()
        watching = asyncio.create_task(_watch_runs(promotion_windows, done))
        try:
            await eventually(lambda: _done(promotion_windows, 2))
            private_rabbit.stop_app()
            await asyncio.sleep(3.0)  # the leader keeps publishing: into the outbox
            _, ready = await shop.call("GET", "/ready")
            kept = ready["rabbitmq"]["outbox_depth"]
            private_rabbit.start_app()
            await eventually(lambda: _outbox_empty(shop), 60)
            published = await published_periods(private_rabbit.url)

            async def all_ran() -> bool:
                return published <= done

            try:
                await eventually(all_ran, 60)
            except AssertionError:
                raise AssertionError(f"periods published and never run: "
                                     f"{sorted(published - done)}") from None
        finally:
            watching.cancel()
        since = await published_periods(private_rabbit.url)
        task = await promotion_windows()
        print(f"outage: {kept} task messages kept in the outbox; {len(published)} periods "
              f"published, every one run ({len(done)} periods run so far, "
              f"{len(since)} published since), {task['stale']} stale")
        assert kept > 0
        assert {period for period in done if period in published} == published
        assert done <= published | since, f"runs of periods never published: {done - published}"
        assert task["failures"] == 0 and task["dead"] == 0


async def tap_published_runs(url: str, task: str) -> None:
    """Declare a durable queue that keeps a copy of every run of ``task`` published."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, TASKS_EXCHANGE)
        queue = await channel.declare_queue(TAP, durable=True)
        await queue.bind(exchange, task)


async def published_periods(url: str) -> set[str]:
    """Take every run the tap holds; return their periods (message ids)."""
    found: set[str] = set()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(TAP, durable=True)
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            assert message.message_id
            found.add(message.message_id)
    return found


async def _watch_runs(read: Callable[[], Awaitable[dict[str, Any]]], done: set[str]) -> None:
    """Add the periods of the task's runs done to ``done``, as the worker shows its recent
    runs (polled often: it remembers only its last RECENT_RUNS)."""
    while True:
        try:
            task = await read()
        except (aiohttp.ClientError, TimeoutError, StopIteration, KeyError):
            task = {}
        done.update(run["run"] for run in task.get("recent_runs", ())
                    if run["outcome"] == "done")
        await asyncio.sleep(0.1)


async def _done(read: Callable[[], Awaitable[dict[str, Any]]], at_least: int) -> Any:
    task = await read()
    return task if task["done"] >= at_least else None


async def _outbox_empty(shop: Shop) -> bool:
    status, ready = await shop.call("GET", "/ready")
    return status == 200 and ready["rabbitmq"]["outbox_depth"] == 0


async def test_only_the_leader_publishes_and_a_new_leader_takes_over(
        workers: WorkerFactory, private_rabbit: PrivateRabbit) -> None:
    started = [workers.start(name, SHOP_RABBIT_URL=private_rabbit.url,
                             SHOP_TASK_PROMOTION_WINDOWS_EVERY="1")
               for name in ("w1", "w2")]
    for worker in started:
        await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shops = [Shop(http, worker.url) for worker in started]

        async def publishers() -> list[int]:
            """Return the indexes of the workers that published promotion-windows recently."""
            found = []
            for index, shop in enumerate(shops):
                status, body = await shop.call("GET", "/api/admin/tasks", headers=ADMIN)
                if status != 200:
                    continue
                task = next(t for t in body["tasks"] if t["name"] == PROMOTION_WINDOWS)
                mine = task["published_here"]
                if mine and utcnow() - datetime.fromisoformat(
                        mine["last_published_at"]) < timedelta(seconds=2):
                    found.append(index)
            return found

        await asyncio.sleep(4.0)  # the group has settled after both joined
        leaders = await eventually(publishers)
        assert len(leaders) == 1, f"one leader publishes, not {leaders}"
        leader = leaders[0]
        started[leader].stop()
        shops.pop(leader)
        assert await eventually(publishers, 60) == [0], "the other worker took over"
