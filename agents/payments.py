"""Payments agent: charges and refunds through the provider, once per order, never waiting.

A request marks the order's payment row pending and the provider is called in the background;
its answer comes back on the payments topic (``ProviderAnswered``, keyed by order id) and
settles the row, so the row keeps one writer and a slow provider holds up nobody else
(``models/payments.py``). A call lost with a worker is made again: the saga asks again for
an order still waiting, and after each rebalance every worker calls again for the pending
rows it owns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import payments_topic
from app import app, settings
from models.payments import (
    PAYMENT_EVENTS,
    Charge,
    PaymentProvider,
    PaymentRequested,
    ProviderAnswered,
    ProviderCall,
    Refund,
    RefundRequested,
    SimulatedProvider,
    answer_of,
    finish_call,
    pending_call,
    start_call,
)
from tables.base import tables_ready
from tables.payments import payments
from tables.replay import Position, Send, decide_once

__all__ = ["call_again_after_rebalance", "provider", "settle_payments"]

log = logging.getLogger(__name__)

#: The payment provider (the built-in simulation until a real one is configured).
provider: PaymentProvider = SimulatedProvider(slow_seconds=settings.payment_slow_seconds)

#: Calls under way in this process, by (call, order id): one at a time per order.
_in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}


async def apply_payment_event(event: Any, position: Position) -> None:
    """Start a charge or refund, or settle one with the provider's answer, once per event."""
    if not isinstance(event, PaymentRequested | RefundRequested | ProviderAnswered):
        return  # the outcomes on this topic are for the orders agent
    calls: list[ProviderCall] = []

    def decide(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        if isinstance(event, ProviderAnswered):
            new_row, effects = finish_call(row, event)
        else:
            new_row, effects, call = start_call(row, event)
            calls.extend([call] if call else [])
        return new_row, to_sends(effects)

    await send_all(decide_once(payments, event.order_id, position, decide))
    for call in calls:
        call_provider(call)


def call_provider(call: ProviderCall) -> None:
    """Make ``call`` in the background, unless the same call is under way here already."""
    key = (call.call, call.order_id)
    if key in _in_flight:
        return
    task = asyncio.get_running_loop().create_task(_call(call))
    _in_flight[key] = task
    task.add_done_callback(lambda _: _in_flight.pop(key, None))


async def _call(call: ProviderCall) -> None:
    answer: Charge | Refund
    try:
        if call.call == "charge":
            answer = await provider.charge(call.order_id, call.amount_cents,
                                           call.payment_method)
        else:
            answer = await provider.refund(f"refund:{call.order_id}", call.charge_id,
                                           call.amount_cents)
        answered = answer_of(call, answer)
        await payments_topic.send(key=call.order_id, value=answered.dumps())
    except Exception:  # the row stays pending: the next request or rebalance calls again
        log.exception("%s of order %s failed to reach the provider", call.call,
                      call.order_id)


@app.agent(payments_topic, name="payments.charges")
async def settle_payments(stream: StreamT[bytes]) -> None:
    """Consume payment requests and the provider's answers from the payments topic."""
    await for_each_event(stream, PAYMENT_EVENTS, apply_payment_event, agent="payments.charges",
                         skip=frozenset({"payment_succeeded", "payment_failed", "refunded"}))


#: The rebalance after which this worker last looked for pending rows.
_rebalances_seen = -1


@app.timer(interval=1.0)
async def call_again_after_rebalance() -> None:
    """After each rebalance, call again for the pending payments this worker now owns.

    A worker that died between marking a row pending and the provider's answer took the call
    with it; the refund of a cancelled order has nobody else to ask again.
    """
    global _rebalances_seen
    if not tables_ready(app) or app.rebalancing_count == _rebalances_seen:
        return
    _rebalances_seen = app.rebalancing_count
    again = 0
    for row in list(payments.values()):
        call = pending_call(row)
        if call is not None:
            call_provider(call)
            again += 1
    if again:
        log.info("payments: called the provider again for %d pending payment(s)", again)
