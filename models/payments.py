"""Payments: the events of a charge and a refund, and the provider behind them.

Charges and refunds are idempotent by order id: the provider gets the order id as the
idempotency key, and the payments agent keeps one payment row per order, so a replayed
``PaymentRequested`` never charges twice. Payment methods are provider tokens, never card
numbers. ``SimulatedProvider`` knows ``pm_card_ok``, ``pm_card_declined``,
``pm_card_insufficient_funds`` and ``pm_card_slow``; a real provider implements
:class:`PaymentProvider`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from models.base import Effect, Event, event_types

__all__ = [
    "PAYMENT_EVENTS",
    "PAYMENT_METHODS",
    "Charge",
    "PaymentFailed",
    "PaymentProvider",
    "PaymentRequested",
    "PaymentSucceeded",
    "Refund",
    "RefundRequested",
    "Refunded",
    "SimulatedProvider",
    "decide_payment",
    "needs_provider",
]

#: The payment methods the simulated provider knows.
PAYMENT_METHODS = ("pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds",
                   "pm_card_slow")


class PaymentRequested(Event):
    """Charge ``amount_cents`` for ``order_id`` with ``payment_method``."""

    event_type = "payment_requested"
    order_id: str
    amount_cents: int
    payment_method: str


class PaymentSucceeded(Event):
    """The order was charged."""

    event_type = "payment_succeeded"
    order_id: str
    amount_cents: int
    charge_id: str


class PaymentFailed(Event):
    """The charge was refused; ``reason`` says why (declined, insufficient_funds, ...)."""

    event_type = "payment_failed"
    order_id: str
    reason: str


class RefundRequested(Event):
    """Give back what was charged for ``order_id``."""

    event_type = "refund_requested"
    order_id: str


class Refunded(Event):
    """The charge of ``order_id`` was refunded."""

    event_type = "refunded"
    order_id: str
    amount_cents: int
    refund_id: str


PAYMENT_EVENTS = event_types(PaymentRequested, PaymentSucceeded, PaymentFailed,
                             RefundRequested, Refunded)


@dataclass(frozen=True, slots=True)
class Charge:
    """A provider's answer to a charge: its id if it succeeded, else why not."""

    ok: bool
    charge_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Refund:
    """A provider's answer to a refund."""

    ok: bool
    refund_id: str = ""
    reason: str = ""


class PaymentProvider(Protocol):
    """What ShopStream needs of a payment provider; both calls must be idempotent by key."""

    async def charge(self, idempotency_key: str, amount_cents: int, method: str) -> Charge:
        """Charge ``amount_cents`` with ``method``; the same key never charges twice."""
        ...

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        """Refund ``amount_cents`` of ``charge_id``; the same key never refunds twice."""
        ...


class SimulatedProvider:
    """A deterministic provider: the answer depends only on the method and the key."""

    def __init__(self, slow_seconds: float = 0.5) -> None:
        self.slow_seconds = slow_seconds

    async def charge(self, idempotency_key: str, amount_cents: int, method: str) -> Charge:
        """Answer as the method says; ``pm_card_slow`` succeeds after ``slow_seconds``."""
        if method == "pm_card_slow":
            await asyncio.sleep(self.slow_seconds)
        elif method == "pm_card_declined":
            return Charge(False, reason="card_declined")
        elif method == "pm_card_insufficient_funds":
            return Charge(False, reason="insufficient_funds")
        elif method != "pm_card_ok":
            return Charge(False, reason="unknown_payment_method")
        if amount_cents < 0:
            return Charge(False, reason="invalid_amount")
        return Charge(True, charge_id="ch_" + _digest(idempotency_key))

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        """Refund any charge this provider made."""
        if not charge_id.startswith("ch_"):
            return Refund(False, reason="unknown_charge")
        return Refund(True, refund_id="re_" + _digest(idempotency_key))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def decide_payment(
    row: Mapping[str, Any] | None, event: Event, answer: Charge | Refund | None
) -> tuple[dict[str, Any] | None, list[Effect]]:
    """Return the payment row after ``event`` and the events it causes.

    ``answer`` is the provider's answer to the charge or refund the event asked for (None when
    the row shows it was already asked: then the stored outcome is repeated, nothing is charged).
    """
    if isinstance(event, PaymentRequested):
        if row is not None:
            return dict(row), [_outcome(row)]  # asked again: the answer stands
        if not isinstance(answer, Charge):
            raise ValueError("a new PaymentRequested needs the provider's Charge")
        new = {"order_id": event.order_id, "amount_cents": event.amount_cents,
               "status": "succeeded" if answer.ok else "failed", "charge_id": answer.charge_id,
               "reason": answer.reason, "refunded_cents": 0, "refund_id": ""}
        return new, [_outcome(new)]
    if isinstance(event, RefundRequested):
        if row is None or row["status"] == "failed":
            return (dict(row) if row else None), []  # nothing was charged
        if row["status"] == "refunded":
            return dict(row), [_refunded(row)]  # asked again: the answer stands
        if not isinstance(answer, Refund) or not answer.ok:
            reason = answer.reason if answer else "no answer"
            raise RuntimeError(f"refund of order {event.order_id} failed: {reason}")
        new = {**row, "refunded_cents": row["amount_cents"], "refund_id": answer.refund_id,
               "status": "refunded"}
        return new, [_refunded(new)]
    return (dict(row) if row else None), []


def needs_provider(row: Mapping[str, Any] | None, event: Event) -> bool:
    """Return True if ``event`` must go to the provider (not asked before for this order)."""
    if isinstance(event, PaymentRequested):
        return row is None
    if isinstance(event, RefundRequested):
        return row is not None and row["status"] == "succeeded" and not row["refunded_cents"]
    return False


def _outcome(row: Mapping[str, Any]) -> Effect:
    order_id = row["order_id"]
    event: Event
    if row["status"] in ("succeeded", "refunded"):
        event = PaymentSucceeded.new(order_id=order_id, amount_cents=row["amount_cents"],
                                     charge_id=row["charge_id"], correlation_id=order_id)
    else:
        event = PaymentFailed.new(order_id=order_id, reason=row["reason"],
                                  correlation_id=order_id)
    return Effect("payments", order_id, event)


def _refunded(row: Mapping[str, Any]) -> Effect:
    order_id = row["order_id"]
    return Effect("payments", order_id, Refunded.new(
        order_id=order_id, amount_cents=row["refunded_cents"], refund_id=row["refund_id"],
        correlation_id=order_id))
