"""Committed offsets of a consumer group, read the way Tansu can answer.

``AIOKafkaConsumer(group_id=...).committed(tp)`` without subscribing (so it does not join the
group): the admin client's ``list_consumer_group_offsets`` cannot parse Tansu's reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["committed_total"]


async def committed_total(bootstrap: str, group: str, topic: str,
                          partitions: Sequence[int]) -> int:
    """Return the sum of ``group``'s committed offsets on ``topic`` (0 where none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
        return total
    finally:
        await consumer.stop()
