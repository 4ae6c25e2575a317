"""Payments: the events of a charge and a refund, and the provider behind them.

Charges and refunds are idempotent by order id: the provider gets the order id as the
idempotency key, and the payments agent keeps one payment row per order, so a replayed
``PaymentRequested`` never charges twice.

A provider may take seconds to answer, and the payments agent must not wait for it: one slow
charge would hold every payment behind it. So a request marks the row ``charging`` (or
``refunding``) and the agent calls the provider in the background (:func:`start_call`); the
answer comes back to the payments topic as ``ProviderAnswered`` and settles the row
(:func:`finish_call`). A call lost with a worker is made again for a pending row (the saga
asks again, and a worker that takes over pending rows calls again), which the provider's
idempotency makes harmless. Payment methods are provider tokens, never card
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
    "ProviderAnswered",
    "ProviderCall",
    "Refund",
    "RefundRequested",
    "Refunded",
    "SimulatedProvider",
    "answer_of",
    "decide_payment",
    "finish_call",
    "needs_provider",
    "pending_call",
    "start_call",
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


class ProviderAnswered(Event):
    """The provider answered a charge or a refund that the payments agent made for an order."""

    event_type = "provider_answered"
    order_id: str
    call: str  # "charge" or "refund"
    amount_cents: int
    ok: bool
    charge_id: str = ""
    refund_id: str = ""
    reason: str = ""


PAYMENT_EVENTS = event_types(PaymentRequested, PaymentSucceeded, PaymentFailed,
                             RefundRequested, Refunded, ProviderAnswered)

#: Rows waiting for the provider's answer.
PENDING = frozenset({"charging", "refunding"})


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """A call to make to the provider for an order: a charge or a refund."""

    call: str
    order_id: str
    amount_cents: int
    payment_method: str = ""
    charge_id: str = ""


def start_call(row: Mapping[str, Any] | None,
               event: Event) -> tuple[dict[str, Any] | None, list[Effect], ProviderCall | None]:
    """Return the row after a request, the events it causes, and the provider call to make.

    A new charge or refund marks the row pending and asks for the call; a request for a
    pending row asks for the call again (it may have been lost with a worker; the provider is
    idempotent); a settled row answers with its stored outcome, as :func:`decide_payment`.
    """
    if isinstance(event, PaymentRequested):
        if row is None:
            pending = {"order_id": event.order_id, "amount_cents": event.amount_cents,
                       "payment_method": event.payment_method, "status": "charging",
                       "charge_id": "", "reason": "", "refunded_cents": 0, "refund_id": ""}
            return pending, [], _call_for(pending)
        if row["status"] == "charging":
            return dict(row), [], _call_for(row)
    if isinstance(event, RefundRequested) and row is not None:
        if needs_provider(row, event):
            pending = {**row, "status": "refunding"}
            return pending, [], _call_for(pending)
        if row["status"] == "refunding":
            return dict(row), [], _call_for(row)
        if row["status"] == "charging":
            return dict(row), [], None  # the charge's answer comes first; the saga asks again
    new_row, effects = decide_payment(row, event, None)
    return new_row, effects, None


def pending_call(row: Mapping[str, Any]) -> ProviderCall | None:
    """Return the call a pending row waits for (None if it waits for none)."""
    return _call_for(row) if row.get("status") in PENDING else None


def _call_for(row: Mapping[str, Any]) -> ProviderCall:
    if row["status"] == "charging":
        return ProviderCall("charge", row["order_id"], row["amount_cents"],
                            payment_method=row.get("payment_method", ""))
    return ProviderCall("refund", row["order_id"], row["amount_cents"],
                        charge_id=row["charge_id"])


def answer_of(call: ProviderCall, answer: Charge | Refund) -> ProviderAnswered:
    """Return the event that carries the provider's ``answer`` to ``call``."""
    return ProviderAnswered.new(
        order_id=call.order_id, call=call.call, amount_cents=call.amount_cents, ok=answer.ok,
        charge_id=answer.charge_id if isinstance(answer, Charge) else "",
        refund_id=answer.refund_id if isinstance(answer, Refund) else "",
        reason=answer.reason, correlation_id=call.order_id)


def finish_call(row: Mapping[str, Any] | None,
                answered: ProviderAnswered) -> tuple[dict[str, Any] | None, list[Effect]]:
    """Return the row settled by the provider's answer, and the outcome to announce.

    An answer for a row that is not waiting for it (settled already: a second call's answer,
    or a redelivery) changes nothing.
    """
    if answered.call == "charge" and row is not None and row["status"] == "charging":
        request = PaymentRequested(type=PaymentRequested.event_type,
                                   event_id=answered.event_id,
                                   occurred_at=answered.occurred_at,
                                   order_id=answered.order_id,
                                   amount_cents=row["amount_cents"],
                                   payment_method=row.get("payment_method", ""))
        charge = Charge(answered.ok, charge_id=answered.charge_id, reason=answered.reason)
        settled, effects = decide_payment(None, request, charge)
        assert settled is not None
        return {**settled, "payment_method": row.get("payment_method", "")}, effects
    if answered.call == "refund" and row is not None and row["status"] == "refunding":
        if not answered.ok:
            raise RuntimeError(f"refund of order {answered.order_id} failed: "
                               f"{answered.reason}")
        refund = RefundRequested.new(order_id=answered.order_id)
        return decide_payment({**row, "status": "succeeded"}, refund,
                              Refund(True, refund_id=answered.refund_id))
    return (dict(row) if row else None), []


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
