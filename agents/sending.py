"""Sending what the rules decided: effects become messages on the topics they name."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from agents.topics import TOPICS
from app import app
from models.base import Effect
from models.tracing import REQUEST_ID, REQUEST_ID_HEADER
from rabbit_bridge.outbox import OutgoingMessage
from runtime.positions import sending
from tables.replay import Send

__all__ = ["RABBIT", "send_all", "to_rabbit", "to_sends"]

#: The "topic" of a send that is a RabbitMQ message (kept in a row like any other send).
RABBIT = "rabbit"


def to_sends(effects: Iterable[Effect]) -> list[Send]:
    """Return ``effects`` as messages (topic, key, JSON), the form rows keep them in."""
    return [(e.topic, e.key, e.event.dumps().decode()) for e in effects]


def to_rabbit(exchange: str, routing_key: str, message_id: str, body: dict[str, Any]) -> Send:
    """Return a RabbitMQ message as a send: a row keeps it, and a redelivery publishes it
    again with the same ``message_id`` (which consumers use to drop the duplicate)."""
    return (RABBIT, json.dumps([exchange, routing_key, message_id]), json.dumps(body, default=str))


async def send_all(sends: Iterable[Send]) -> None:
    """Send each message to its topic (buffered; flushed before offsets are committed).

    RabbitMQ messages are published durable, all in one write to the publisher's outbox file,
    before the event's offset can be committed. Both carry the id of the request being
    handled, if any (models/tracing.py): Kafka messages through ShopTopic, RabbitMQ messages
    as their ``shop-request-id`` header. A Kafka message is also noted as caused by the event
    being applied, if its topic follows the message's (runtime/positions.py).
    """
    durable: list[OutgoingMessage] = []
    request_id = REQUEST_ID.get()
    for topic, key, value in sends:
        if topic == RABBIT:
            exchange, routing_key, message_id = json.loads(key)
            headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
            durable.append(OutgoingMessage(exchange, routing_key, message_id, value.encode(),
                                           time.time(), headers))
        else:
            sending(topic, await TOPICS[topic].send(key=key, value=value.encode()))
    app.services.publisher.publish_durable(durable)
