"""Orders agent: the saga. Applies each order event to the order and sends what it causes.

It consumes the ``orders`` and ``payments`` topics (both keyed by order id), so an order's
row is always written from the same partition number. A timer asks again for answers that
an order has waited for longer than CHASE_AFTER_S (a request or its answer lost in a worker's
crash). Orders that waited longer than SHOP_ORDER_TTL for stock or payment are expired when
the task scheduler's ``expire-orders`` task sends an ``ExpirySweep`` to every partition
(:func:`request_expiry_sweep`): each worker expires the overdue orders it owns.
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
from models.base import utcnow
from models.inventory import StockRejected, StockReserved
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    CancelRequested,
    DeliverRequested,
    ExpireRequested,
    ExpirySweep,
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
from models.promotions import PromotionRedeemed, PromotionRefused
from tables.base import tables_ready
from tables.orders import open_orders, orders, orders_by_user, watchers
from tables.replay import Position, Send, decide_once, update_once

__all__ = [
    "chase_open_orders",
    "expire_overdue_orders",
    "index_orders_by_user",
    "request_expiry_sweep",
    "run_order_saga",
]

#: The events that move an order (the others on these topics are for other agents).
SAGA_EVENTS = (OrderPlaced, StockReserved, StockRejected, PaymentSucceeded, PaymentFailed,
               Refunded, CancelRequested, ShipRequested, DeliverRequested, ExpireRequested,
               PromotionRedeemed, PromotionRefused)

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
    if isinstance(event, ExpirySweep):
        await expire_overdue_orders()
        return
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


#: Orders chased / asked to expire recently (order id -> monotonic time): once per period.
_chased: dict[str, float] = {}
_expiring: dict[str, float] = {}


def _ask_once(asked: dict[str, float], order_id: str, clock: float) -> bool:
    """Return True if ``order_id`` is not in ``asked`` within CHASE_AFTER_S (and note it)."""
    if clock - asked.get(order_id, -CHASE_AFTER_S) < CHASE_AFTER_S:
        return False
    asked[order_id] = clock
    for old in [k for k, at in asked.items() if clock - at > 60 * CHASE_AFTER_S]:
        del asked[old]
    return True


@app.timer(interval=CHASE_S)
async def chase_open_orders() -> None:
    """Ask again for answers an order has waited for too long.

    Runs on every worker over the orders it owns (a table iterates its active partitions),
    and only while the worker is ready: during a recovery a row may be behind.
    """
    if not tables_ready(app):
        return
    now = utcnow()
    clock = time.monotonic()
    sends: list[Send] = []
    for order_id in list(open_orders.keys()):
        row = orders.get(order_id)
        if row is None or row["status"] not in ACTIVE:
            continue
        if now - datetime.fromisoformat(row["history"][-1]["at"]) > CHASE_AFTER and (
                _ask_once(_chased, order_id, clock)):
            sends.extend(to_sends(chase(Order.from_row(row))))
    await send_all(sends)


async def expire_overdue_orders() -> int:
    """Ask to expire the open orders this worker owns that are past their deadline.

    Called for each ``ExpirySweep``; a worker owning several partitions gets several sweeps,
    and the saga's expiry is idempotent by state, so asking twice is harmless.
    """
    now = utcnow().isoformat()
    clock = time.monotonic()
    expired = 0
    for order_id, deadline in list(open_orders.items()):
        row = orders.get(order_id)
        if row is None or row["status"] not in ACTIVE or deadline > now:
            continue
        if not _ask_once(_expiring, order_id, clock):
            continue
        expire = ExpireRequested.new(order_id=order_id, correlation_id=order_id)
        await orders_topic.send(key=order_id, value=expire.dumps())
        expired += 1
    return expired


async def request_expiry_sweep() -> int:
    """Send an ``ExpirySweep`` to every partition of the orders topic; return how many.

    The owner of each partition expires its overdue orders (the expire-orders task).
    """
    partitions = app.conf.topic_partitions
    for partition in range(partitions):
        sweep = ExpirySweep.new(partition=partition, correlation_id=f"sweep-{partition}")
        await orders_topic.send(key=f"sweep-{partition}", partition=partition,
                                value=sweep.dumps())
    return partitions
