"""Orders agent: the saga. Applies each order event to the order and sends what it causes.

It consumes the ``orders`` and ``payments`` topics (both keyed by order id), so an order's
row is always written from the same partition number. The expiry timer asks to expire
orders that waited longer than SHOP_ORDER_TTL for stock or payment.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import order_saga_topics, orders_topic, user_orders_topic
from app import app, settings
from models.base import Event, utcnow
from models.inventory import StockRejected, StockReserved
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    CancelRequested,
    DeliverRequested,
    ExpireRequested,
    Order,
    OrderIndexed,
    OrderPlaced,
    OrderUpdate,
    ShipRequested,
    decide,
    index_order,
)
from models.payments import PAYMENT_EVENTS, PaymentFailed, PaymentSucceeded, Refunded
from tables.orders import open_orders, orders, orders_by_user, watchers
from tables.replay import Position, Send, decide_once, update_once

__all__ = ["expire_overdue_orders", "index_orders_by_user", "run_order_saga"]

#: The events that move an order (the others on these topics are for other agents).
SAGA_EVENTS = (OrderPlaced, StockReserved, StockRejected, PaymentSucceeded, PaymentFailed,
               Refunded, CancelRequested, ShipRequested, DeliverRequested, ExpireRequested)

#: Types on the saga's topics that are for other agents or readers (skipped undecoded).
NOT_FOR_THE_SAGA = frozenset({"payment_requested", "refund_requested",
                              *(t for t, cls in ORDER_EVENTS.items() if cls is OrderUpdate)})

#: How often the expiry timer looks for overdue orders, in seconds.
EXPIRY_CHECK_S = max(0.5, min(10.0, settings.order_ttl / 5))


async def apply_order_event(event: Any, position: Position) -> None:
    """Move the order ``event`` is about, once, and send what that causes."""
    if not isinstance(event, SAGA_EVENTS):
        return
    order_id: str = event.order_id
    now = utcnow()

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        decision = decide(Order.from_row(row) if row else None, event, now)
        new_row = decision.order.to_row() if decision.order else None
        return new_row, to_sends(decision.effects)

    sends = decide_once(orders, order_id, position, step)
    row = orders.get(order_id)
    if row is not None:
        track_deadline(order_id, row)
        watchers.changed(order_id, row)
    await send_all(sends)


def track_deadline(order_id: str, row: dict[str, Any]) -> None:
    """Keep ``open_orders`` to the orders still waiting for stock or payment."""
    if row["status"] in ACTIVE:
        if order_id not in open_orders:
            placed_at = row["history"][0]["at"]
            deadline = datetime.fromisoformat(placed_at) + timedelta(seconds=settings.order_ttl)
            open_orders[order_id] = deadline.isoformat()
    elif order_id in open_orders:
        del open_orders[order_id]


@app.agent(order_saga_topics, name="orders.saga")
async def run_order_saga(stream: StreamT[bytes]) -> None:
    """Consume order and payment events into the orders table."""
    await for_each_event(stream, {**ORDER_EVENTS, **PAYMENT_EVENTS}, apply_order_event,
                         agent="orders.saga", skip=NOT_FOR_THE_SAGA)


async def apply_order_index(event: OrderIndexed, position: Position) -> None:
    """Add the order to its customer's index, once."""
    update_once(orders_by_user, event.user_id, position, lambda row: index_order(row, event))


@app.agent(user_orders_topic, name="orders.by-user")
async def index_orders_by_user(stream: StreamT[bytes]) -> None:
    """Consume the user-orders topic into each customer's order index."""
    await for_each_event(stream, OrderIndexed, apply_order_index, agent="orders.by-user")


#: Expiries asked for recently (order id -> monotonic time), so one is not asked every tick.
_asked: dict[str, float] = {}


@app.timer(interval=EXPIRY_CHECK_S)
async def expire_overdue_orders() -> None:
    """Ask to expire the orders on this worker that are past their deadline."""
    now = utcnow().isoformat()
    clock = time.monotonic()
    for order_id, deadline in list(open_orders.items()):
        if deadline <= now and clock - _asked.get(order_id, 0.0) > 5 * EXPIRY_CHECK_S:
            _asked[order_id] = clock
            expire: Event = ExpireRequested.new(order_id=order_id, correlation_id=order_id)
            await orders_topic.send(key=order_id, value=expire.dumps())
    for order_id in [k for k, at in _asked.items() if clock - at > 60 * EXPIRY_CHECK_S]:
        del _asked[order_id]
