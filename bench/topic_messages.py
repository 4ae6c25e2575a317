"""Kafka messages a worker writes: idle, and per order through the saga, topic by topic.

One real shop worker on its own Tansu broker and its own RabbitMQ virtual host, with the
bench's products. Each count reads every topic from its beginning up to the end offsets of
the moment it starts (a raw consumer) and counts the records; the ``orders`` topic is counted
by event type too. Three counts: once the worker is idle after the catalog, ``--idle``
seconds later (what an idle worker writes: nothing is the goal), and once the worker is idle
again after ``--orders`` orders placed with ``pm_card_ok``, 50 in flight (messages per order,
the tables' changelogs included).

``python -m bench.topic_messages [--orders 1000] [--idle 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.errors import BenchError
from bench.kafka_raw import count_messages, grown
from bench.report import UNLIMITED, say
from bench.saga import PRODUCTS, _place, add_products, wait_until_idle
from scripts.devstack import StackError, broker_env, rabbit_vhost, start_tansu, start_worker

__all__ = ["main", "measure_topic_messages"]

#: Orders in flight while the saga runs.
IN_FLIGHT = 50


async def measure_topic_messages(workdir: Path, rabbit_url: str, orders: int,
                                 idle_seconds: float) -> dict[str, object]:
    """Return what an idle worker wrote in ``idle_seconds`` and what ``orders`` orders did."""
    broker = start_tansu(log_path=workdir / "tansu.log")
    try:
        with rabbit_vhost(rabbit_url, "shopbench") as url:
            worker = start_worker("bench-messages", broker_env(broker), url, workdir,
                                  extra_env=UNLIMITED)
            try:
                await asyncio.to_thread(worker.wait_ready, 120)
                assert worker.process is not None
                pid = worker.process.pid
                async with aiohttp.ClientSession() as http:
                    await add_products(http, [worker.url], "BENCH", PRODUCTS, price_cents=100)
                    await wait_until_idle(pid, time.monotonic() + 120)
                    start, start_types = await count_messages(broker.bootstrap)
                    began = time.monotonic()
                    await asyncio.sleep(idle_seconds)
                    idle, idle_types = await count_messages(broker.bootstrap)
                    idle_took = time.monotonic() - began
                    say(f"idle {idle_took:.1f} s: {grown(start, idle) or 'no message'}")
                    rng = random.Random(3)
                    limit = asyncio.Semaphore(IN_FLIGHT)

                    async def one(n: int) -> None:
                        async with limit:
                            await _place(http, worker.url, n, rng)

                    began = time.monotonic()
                    await asyncio.gather(*(one(n) for n in range(orders)))
                    deadline = time.monotonic() + 300 + orders / 20
                    # Every order confirmed, then the worker idle: on a busy machine a worker
                    # short of CPU can look idle with a backlog still to work off.
                    while (await count_messages(broker.bootstrap))[1]["order_confirmed"] \
                            < idle_types["order_confirmed"] + orders:
                        if time.monotonic() > deadline:
                            raise BenchError("the orders were not all confirmed in time")
                        await asyncio.sleep(1.0)
                    await wait_until_idle(pid, deadline)
                    saga_took = time.monotonic() - began
                    done, done_types = await count_messages(broker.bootstrap)
            finally:
                await asyncio.to_thread(worker.stop)
    finally:
        broker.stop()
    saga = grown(idle, done)
    changelogs = sum(n for topic, n in saga.items() if topic.endswith("-changelog"))
    return {
        "idle_seconds": round(idle_took, 1),
        "idle_messages": grown(start, idle),
        "idle_orders_by_type": grown(start_types, idle_types),
        "orders": orders,
        "saga_seconds": round(saga_took, 1),
        "saga_messages": saga,
        "saga_orders_by_type": grown(idle_types, done_types),
        "messages_per_order": round(sum(saga.values()) / orders, 2),
        "changelog_messages_per_order": round(changelogs / orders, 2),
        "orders_topic_messages_per_order": round(saga.get("orders", 0) / orders, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Count an idle worker's messages, then the saga's per order; print them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.topic_messages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds (default 30)")
    parser.add_argument("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="shopstream-bench-messages-"))
    try:
        figures = asyncio.run(measure_topic_messages(workdir, args.rabbit_url, args.orders,
                                                     args.idle))
    except (BenchError, StackError) as exc:
        say(f"error: {exc}; logs in {workdir}")
        return 1
    print(json.dumps(figures, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
