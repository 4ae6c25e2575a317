"""Raw aiokafka: the producer rate, and the consumer + json.loads + count-per-key rate.

Producer: the clock runs from the first ``send`` (producer started) until ``flush()`` returns,
i.e. every batch is acknowledged (``asyncio.gather`` over one future a message would cost a
third of the producer's time at 200k messages). Consumer (no group, every partition assigned,
from the beginning): from just before the first ``getmany`` to the ``count``-th record counted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

from bench.errors import BenchError
from bench.report import PhaseResult

__all__ = ["count_messages", "create_topic", "grown", "measure_consumer", "measure_producer",
           "new_producer", "produce_all", "send_all"]

#: How long reading the raw topic back may take before the phase fails.
READ_TIMEOUT_S = 120.0


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` with ``partitions`` partitions (an existing topic is an error)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    for topic, code, message in response.topic_errors:
        if code:
            raise BenchError(f"creating topic {topic!r} failed ({code}): {message}")


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    """Return the producer every phase uses: linger 5 ms, acks=1, otherwise aiokafka defaults."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)


async def send_all(
    producer: AIOKafkaProducer, topic: str, events: Sequence[tuple[str, bytes]]
) -> list[RecordMetadata]:
    """Send ``(key, value)`` pairs (keys raw UTF-8), wait for every ack, return the metadata."""
    futures = [await producer.send(topic, value, key=key.encode()) for key, value in events]
    await producer.flush()
    return [future.result() for future in futures]


async def produce_all(bootstrap: str, topic: str, events: Sequence[tuple[str, bytes]]) -> None:
    """Send ``events`` to ``topic`` with a producer of their own, and wait for every ack."""
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        await send_all(producer, topic, events)
    finally:
        await producer.stop()


async def measure_producer(
    bootstrap: str, topic: str, events: Sequence[tuple[str, bytes]]
) -> PhaseResult:
    """Time sending ``events``: from the first send to the last ack (producer already up)."""
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        await send_all(producer, topic, events)
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return PhaseResult("raw aiokafka producer", len(events), seconds)


async def measure_consumer(bootstrap: str, topic: str, count: int) -> PhaseResult:
    """Time reading ``count`` records from the start: getmany, json.loads, count per key."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise BenchError(f"topic {topic!r} has no partitions in the broker's metadata")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        per_key: Counter[str] = Counter()
        seen = 0
        started = time.perf_counter()
        deadline = started + READ_TIMEOUT_S
        while seen < count:
            if time.perf_counter() > deadline:
                raise BenchError(f"read only {seen:,} of {count:,} records of {topic!r} "
                                 f"in {READ_TIMEOUT_S:.0f} s")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                    per_key[record.key.decode()] += 1
                    seen += 1
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return PhaseResult("raw aiokafka consumer + json.loads + count", seen, seconds,
                       extra={"partitions": len(partitions), "distinct_keys": len(per_key)})


async def count_messages(bootstrap: str, *, skip_prefix: str | None = None
                         ) -> tuple[Counter[str], Counter[str]]:
    """Return the records of every topic so far (but those whose name starts with
    ``skip_prefix``), by topic, and those of ``orders`` by type."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        topics = await consumer.topics()
        tps = [TopicPartition(topic, partition) for topic in topics
               if skip_prefix is None or not topic.startswith(skip_prefix)
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


def grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """Return the counts that grew from ``before`` to ``after``, by how much."""
    return {key: after[key] - before[key] for key in sorted(after) if after[key] > before[key]}
