"""Raw aiokafka through an order's hops: the broker's floor of the saga's latency.

An order placed with ``POST /api/orders`` is confirmed after four hops through Kafka, each
read by the worker (``order_placed`` -> ``reserve_stock`` -> ``stock_reserved`` ->
``provider_answered`` -> ``order_confirmed``), and the bench's reader sees the confirmation
after a fifth read. The relay here does the same with raw aiokafka and no work at all: one
consumer reads every hop's topic (a worker has one consumer, one fetch in flight), with the
worker's fetch wait on Tansu; a producer without linger (the shop's default) sends each record
on to the next hop's topic; a reader of the last topic waits as the bench's reader does.
Tansu answers a fetch that found nothing only when its wait runs out, even if data arrives
meanwhile, so each hop waits for the fetch in flight to end: this is what the broker itself
costs an order at a steady rate.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.errors import BenchError
from bench.kafka_raw import create_topic
from config.settings import Settings

__all__ = ["HOPS", "measure_relay"]

#: The hops a worker reads on an order's way from placed to confirmed.
HOPS = 4
#: Partitions of each hop's topic (the shop's SHOP_TOPIC_PARTITIONS default).
PARTITIONS = 8
#: Records relayed first and not measured (connections, metadata, the first fetches).
WARM_UP = 20


async def measure_relay(bootstrap: str, rate: float, seconds: float, *, reader_wait_ms: int,
                        prefix: str = "bench-relay") -> list[float]:
    """Return each record's time from its send to its reader, through :data:`HOPS` relayed
    hops, records sent at ``rate`` a second for ``seconds``."""
    topics = [f"{prefix}-{hop}" for hop in range(HOPS + 1)]
    for topic in topics:
        await create_topic(bootstrap, topic, PARTITIONS)
    worker_wait_ms = round(Settings().tansu_fetch_wait * 1000)  # the bench's workers' wait
    relay = _consumer(bootstrap, topics[:-1], worker_wait_ms)
    reader = _consumer(bootstrap, topics[-1:], reader_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    await relay.start()
    await reader.start()
    _assign(relay, topics[:-1])
    _assign(reader, topics[-1:])
    seen: dict[int, float] = {}
    tasks = [asyncio.create_task(_relay(relay, producer, topics)),
             asyncio.create_task(_read(reader, seen))]
    try:
        await _send(producer, topics[0], range(WARM_UP), rate, seen)
        count = round(rate * seconds)
        sent = await _send(producer, topics[0], range(WARM_UP, WARM_UP + count), rate, seen)
        return [seen[n] - began for n, began in sent.items()]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (reader, relay, producer):
            await client.stop()


def _consumer(bootstrap: str, topics: list[str], wait_ms: int) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms)


def _assign(consumer: AIOKafkaConsumer, topics: list[str]) -> None:
    consumer.assign([TopicPartition(topic, partition) for topic in topics
                     for partition in range(PARTITIONS)])


async def _send(producer: AIOKafkaProducer, topic: str, numbers: range, rate: float,
                seen: dict[int, float]) -> dict[int, float]:
    """Send ``numbers`` at ``rate``, each keyed by itself; wait until the reader saw them all."""
    sent: dict[int, float] = {}
    began = time.perf_counter()
    for i, n in enumerate(numbers):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        sent[n] = time.perf_counter()
        await producer.send(topic, str(n).encode(), key=str(n).encode())
    deadline = time.monotonic() + 30
    while any(n not in seen for n in numbers):
        if time.monotonic() > deadline:
            missing = sum(n not in seen for n in numbers)
            raise BenchError(f"raw relay: {missing} of {len(numbers)} records did not arrive")
        await asyncio.sleep(0.05)
    return sent


async def _relay(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                 topics: list[str]) -> None:
    """Send every record of hop ``i``'s topic on to hop ``i + 1``'s."""
    next_topic = dict(itertools.pairwise(topics))
    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        for tp, records in batches.items():
            for record in records:
                await producer.send(next_topic[tp.topic], record.value, key=record.key)


async def _read(consumer: AIOKafkaConsumer, seen: dict[int, float]) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        now = time.perf_counter()
        for records in batches.values():
            for record in records:
                seen.setdefault(int(record.value), now)
