"""The RabbitMQ names of the shop (docs/design.md) and declaring them.

Exchanges are declared by whoever publishes to them (the publisher, at every (re)connect);
queues by their consumers. Everything is durable: it outlives a RabbitMQ restart.
"""

from __future__ import annotations

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange

__all__ = [
    "EXCHANGES",
    "LOGS_EXCHANGE",
    "NOTIFICATIONS_QUEUE",
    "PROMOTIONS_EXCHANGE",
    "TASKS_EXCHANGE",
    "declare_exchange",
]

#: Log records of every service, routing key ``<service>.<level>``.
LOGS_EXCHANGE = "shop.logs"
#: promotion.created/updated/activated/expired/redeemed.
PROMOTIONS_EXCHANGE = "shop.promotions"
#: Background tasks, routing key = the task's name.
TASKS_EXCHANGE = "shop.tasks"
#: Less critical notifications (mail), published through the default exchange.
NOTIFICATIONS_QUEUE = "shop.notifications"

#: The exchanges the shop publishes to, and their kinds ("" is RabbitMQ's default exchange).
EXCHANGES: dict[str, ExchangeType] = {
    LOGS_EXCHANGE: ExchangeType.TOPIC,
    PROMOTIONS_EXCHANGE: ExchangeType.TOPIC,
    TASKS_EXCHANGE: ExchangeType.DIRECT,
}


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """Declare the shop's exchange ``name`` (durable) on ``channel``; "" is the default one."""
    if name == "":
        return channel.default_exchange
    return await channel.declare_exchange(name, EXCHANGES[name], durable=True)
