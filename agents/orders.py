"""Orders agent: the saga. Applies each order event to the order and sends what it causes.

It consumes the ``orders`` and ``payments`` topics (both keyed by order id), so an order's
row is always written from the same partition number. A timer expires orders that waited
longer than SHOP_ORDER_TTL for stock or payment, and asks again for answers that an order has
waited for longer than CHASE_AFTER_S (a request or its answer lost in a worker's crash).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import order_saga_topics, user_orders_topic
from app import app, settings
from models.base import utcnow
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
    chase,
    decide,
    index_order,
)
from models.payments import PAYMENT_EVENTS, PaymentFailed, PaymentSucceeded, Refunded
from tables.base import tables_ready
from tables.orders import open_orders, orders, orders_by_user, watchers
from tables.replay import Position, Send, decide_once, update_once

__all__ = ["chase_open_orders", "index_orders_by_user", "run_order_saga"]

#: The events that move an order (the others on these topics are for other agents).
SAGA_EVENTS = (OrderPlaced, StockReserved, StockRejected, PaymentSucceeded, PaymentFailed,
               Refunded, CancelRequested, ShipRequested, DeliverRequested, ExpireRequested)

#: Types on the saga's topics that are for other agents or readers (skipped undecoded).
NOT_FOR_THE_SAGA = frozenset({"payment_requested", "refund_requested",
                              *(t for t, cls in ORDER_EVENTS.items() if cls is OrderUpdate)})

#: How often open orders are checked (expiry and lost answers), in seconds.
CHASE_S = 1.0
#: How long an order waits for an answer before its request is sent again.
CHASE_AFTER_S = 5.0
CHASE_AFTER = timedelta(seconds=CHASE_AFTER_S)


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


#: Orders chased or expired recently (order id -> monotonic time): one request per period.
_asked: dict[str, float] = {}


@app.timer(interval=CHASE_S)
async def chase_open_orders() -> None:
    """Expire overdue orders, and ask again for answers an order has waited for too long.

    Runs on every worker over the orders it owns (a table iterates its active partitions),
    and only while the worker is ready: during a recovery a row may be behind.
    """
    if not tables_ready(app):
        return
    now = utcnow()
    clock = time.monotonic()
    sends: list[Send] = []
    for order_id, deadline in list(open_orders.items()):
        if clock - _asked.get(order_id, -CHASE_AFTER_S) < CHASE_AFTER_S:
            continue
        row = orders.get(order_id)
        if row is None or row["status"] not in ACTIVE:
            continue
        if deadline <= now.isoformat():
            expire = ExpireRequested.new(order_id=order_id, correlation_id=order_id)
            sends.append(("orders", order_id, expire.dumps().decode()))
        elif now - datetime.fromisoformat(row["history"][-1]["at"]) > CHASE_AFTER:
            sends.extend(to_sends(chase(Order.from_row(row))))
        else:
            continue
        _asked[order_id] = clock
    for order_id in [k for k, at in _asked.items() if clock - at > 60 * CHASE_AFTER_S]:
        del _asked[order_id]
    await send_all(sends)
