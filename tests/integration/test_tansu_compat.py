"""Tansu's wrong end offset, shown against the real broker, and the correction."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from runtime.tansu_compat import true_end_offsets
from scripts.devstack import Broker

pytestmark = pytest.mark.integration


async def _two_batches(bootstrap: str, topic: str) -> None:
    """Write offsets [0 1] as one batch and [2 3] as another."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for batch in ((b"0", b"1"), (b"2", b"3")):
            futures = [await producer.send(topic, value, partition=0) for value in batch]
            await producer.flush()
            for future in futures:
                await future
    finally:
        await producer.stop()


async def _reported_end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_tansu_reports_the_last_batch_start_and_the_compat_layer_corrects_it(
    broker: Broker,
) -> None:
    await _two_batches(broker.bootstrap, "two-batches")

    reported = await _reported_end_offset(broker.bootstrap, "two-batches")
    # Kafka would answer 4 (last offset 3, + 1); Tansu answers the last batch's first + 1.
    assert reported == 3

    tp = TP("two-batches", 0)
    corrected = await true_end_offsets(broker.bootstrap, {tp: reported})
    assert corrected == {tp: 4}


async def test_empty_partitions_are_left_as_reported(broker: Broker) -> None:
    tp = TP("never-written", 0)
    assert await true_end_offsets(broker.bootstrap, {tp: 0}) == {tp: 0}
