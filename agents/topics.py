"""Every Kafka topic of the shop, declared once (key in the comment).

Keys are strings serialized as raw UTF-8 bytes on every topic and every table, so that the
partition a producer picks, the partition a table row lives in and the worker that
``app.table_route`` sends a keyed read to are the same. Values are raw bytes: agents decode
them with :func:`agents.dead_letters.for_each_event`, which dead-letters what does not decode.
"""

from __future__ import annotations

from typing import Any

from faust.types import TopicT

from app import app

__all__ = ["analytics_topic", "dead_letters_topic", "shop_topic"]


def shop_topic(name: str, **options: Any) -> TopicT:
    """Declare a topic with string keys and raw JSON values, created with SHOP_TOPIC_PARTITIONS.

    ``internal=True`` makes Faust create the topic at start with the configured partitions
    (instead of leaving it to the broker's auto-create and its own default), so every topic
    and table changelog of the shop is co-partitioned.
    """
    return app.topic(
        name,
        key_type=str,
        key_serializer="raw",
        value_type=bytes,
        value_serializer="raw",
        partitions=app.conf.topic_partitions,
        internal=True,
        **options,
    )


#: analytics [session id]: tracking events (page_view, product_view, search, cart changes).
analytics_topic = shop_topic("analytics")

#: dead-letters [source topic]: events that failed to decode or to be handled, with the error.
dead_letters_topic = app.topic(
    "dead-letters",
    key_type=str,
    key_serializer="raw",
    value_serializer="json",
    partitions=app.conf.topic_partitions,
    internal=True,
)
