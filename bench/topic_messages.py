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
from collections import Counter
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.errors import BenchError
from bench.report import UNLIMITED, say
from bench.saga import PRODUCTS, _place, add_products, wait_until_idle
from scripts.devstack import StackError, broker_env, rabbit_vhost, start_tansu, start_worker

__all__ = ["count_messages", "main", "measure_topic_messages"]

#: Orders in flight while the saga runs.
IN_FLIGHT = 50


async def count_messages(bootstrap: str) -> tuple[Counter[str], Counter[str]]:
    """Return the records of every topic so far, by topic, and those of ``orders`` by type."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        topics = await consumer.topics()
        tps = [TopicPartition(topic, partition) for topic in topics
               for partition in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Up to the end offsets of now: a worker that writes all the time would never leave
        # a quiet moment. Tansu may answer an end offset inside the last batch, and a fetch
        # returns whole batches, so reading up to it reads that batch to its end.
        ends = await consumer.end_offsets(tps)
        by_topic: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        while await _short_of(consumer, ends):
            batches = await consumer.getmany(timeout_ms=300, max_records=20_000)
            for tp, records in batches.items():
                by_topic[tp.topic] += len(records)
                if tp.topic == "orders":
                    by_type.update(_type_of(record.value) for record in records)
        return by_topic, by_type
    finally:
        await consumer.stop()


async def _short_of(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Return True while ``consumer`` has not read some partition up to its end in ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def _type_of(value: bytes | None) -> str:
    try:
        return str(json.loads(value or b"")["type"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in sorted(after) if after[key] > before[key]}


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
                    say(f"idle {idle_took:.1f} s: {_grown(start, idle) or 'no message'}")
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
    saga = _grown(idle, done)
    changelogs = sum(n for topic, n in saga.items() if topic.endswith("-changelog"))
    return {
        "idle_seconds": round(idle_took, 1),
        "idle_messages": _grown(start, idle),
        "idle_orders_by_type": _grown(start_types, idle_types),
        "orders": orders,
        "saga_seconds": round(saga_took, 1),
        "saga_messages": saga,
        "saga_orders_by_type": _grown(idle_types, done_types),
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
