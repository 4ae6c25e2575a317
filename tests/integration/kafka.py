"""Small real-Kafka helpers for integration tests (raw aiokafka against the test broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

__all__ = ["consume_until", "produce", "records_of_key"]


async def produce(
    bootstrap: str, topic: str, items: Iterable[tuple[str | None, bytes]], *,
    linger_ms: int = 5,
) -> int:
    """Send ``(key, value)`` pairs to ``topic``, wait for every ack; return how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=1)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key.encode() if key is not None else None)
            for key, value in items
        ]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str, topic: str, count: int, *, within: float = 20.0
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``count`` records arrived or ``within`` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        if partitions is None:
            return []
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        records: list[ConsumerRecord] = []
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def records_of_key(bootstrap: str, topics: Iterable[str], key: str,
                         limit: int = 160, *, mentioning: Iterable[str] = ()) -> list[str]:
    """Return, one line each, every record of ``topics`` whose key is ``key`` (a diagnosis),
    and every record of the ``mentioning`` topics whose value holds it (the dead letters
    are keyed by their source topic).

    Reads each topic's partitions from the beginning to their end offsets (as Tansu reports
    them, and a little past: see runtime/tansu_compat.py).
    """
    wanted = key.encode()
    by_value = set(mentioning)
    lines: list[str] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # the metadata of every topic, not only of those assigned
        partitions = {topic: consumer.partitions_for_topic(topic) or set()
                      for topic in [*topics, *by_value]}
        for topic, numbers in partitions.items():
            tps = [TopicPartition(topic, p) for p in sorted(numbers)]
            if not tps:
                lines.append(f"{topic}: no such topic")
                continue
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            idle = 0
            while idle < 3:
                batches = await consumer.getmany(timeout_ms=300, max_records=10_000)
                idle = 0 if batches else idle + 1
                for tp, records in batches.items():
                    lines.extend(
                        f"{topic}[{tp.partition}]@{r.offset}: {(r.value or b'')[:limit]!r}"
                        for r in records
                        if r.key == wanted or (topic in by_value and wanted in (r.value or b"")))
    finally:
        await consumer.stop()
    return lines
