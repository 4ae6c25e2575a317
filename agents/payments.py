"""Payments agent: charges and refunds through the provider, once per order."""

from __future__ import annotations

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
    Refund,
    RefundRequested,
    SimulatedProvider,
    decide_payment,
    needs_provider,
)
from tables.payments import payments
from tables.replay import Position, Send, already_applied, decide_once

__all__ = ["provider", "settle_payments"]

#: The payment provider (the built-in simulation until a real one is configured).
provider: PaymentProvider = SimulatedProvider(slow_seconds=settings.payment_slow_seconds)


async def apply_payment_request(event: Any, position: Position) -> None:
    """Charge or refund as ``event`` asks, once per order, and announce the outcome."""
    if not isinstance(event, PaymentRequested | RefundRequested):
        return  # the outcomes on this topic are for the orders agent
    order_id = event.order_id
    row = payments.get(order_id)
    answer: Charge | Refund | None = None
    if needs_provider(row, event) and not already_applied(row, position):
        if isinstance(event, PaymentRequested):
            answer = await provider.charge(order_id, event.amount_cents, event.payment_method)
        elif row is not None:
            answer = await provider.refund(f"refund:{order_id}", row["charge_id"],
                                           row["amount_cents"])

    def decide(current: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        new_row, effects = decide_payment(current, event, answer)
        return new_row, to_sends(effects)

    await send_all(decide_once(payments, order_id, position, decide))


@app.agent(payments_topic, name="payments.charges")
async def settle_payments(stream: StreamT[bytes]) -> None:
    """Consume payment requests from the payments topic."""
    await for_each_event(stream, PAYMENT_EVENTS, apply_payment_request, agent="payments.charges",
                         skip=frozenset({"payment_succeeded", "payment_failed", "refunded"}))
