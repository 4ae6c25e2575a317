"""Payments: the events of a charge and a refund, the payment row, and its retries.

Charges and refunds are idempotent by order id: the provider gets the order id as the
idempotency key (``refund:<order id>`` for the refund), and the payment step keeps one
payment row per order, so a replayed ``PaymentRequested`` never charges twice.

A provider may take seconds to answer, and the payment step must not wait for it: one slow
charge would hold every payment behind it. So a request marks the row ``charging`` (or
``refunding``) and the agent calls the provider in the background (:func:`start_call`); what
came of the call returns to the payments topic as ``ProviderAnswered`` and settles the row
(:func:`finish_call`).

A call that got no answer (the provider raised, or did not answer within the call timeout)
is a fault, tried again; an answer (a charge, a decline, a refund, a refused refund) is
final and never tried again. The row keeps the retry state, so that a crash, a rebalance or
a duplicate delivery neither loses nor multiplies tries: ``attempts`` (the faulted tries of
the pending call), ``next_try_at`` (epoch seconds before which the next try is not made)
and ``last_error``. A fault answers for one try (``ProviderAnswered.attempt``): a fault of
any other try changes nothing. After the n-th fault the next try waits
``base_backoff * 2 ** (n - 1)`` (:func:`backoff`); after ``tries`` faults the payment gives
up and the agent dead-letters the fault's message with the reason:

- a charge that gives up fails: the row is ``failed`` with the reason
  ``provider_unavailable`` and the saga sees ``PaymentFailed(reason="provider_unavailable")``
  (it releases the stock, the order ends ``payment_failed``); a real provider may still have
  made a charge whose answer was lost, which is not taken back by itself: the provider's
  ledger and the dead letter show it to an operator;
- a refund that gives up, or that the provider refuses, leaves the row ``refund_failed``:
  the money is still charged and an operator settles it by hand. The saga sees nothing more
  (the order keeps its ending, with no refunded cents); a later ``RefundRequested`` changes
  nothing, so no redelivery starts the tries over.

A call lost with a worker is made again for a pending row (the saga asks again, and a worker
that takes over pending rows calls again), which the provider's idempotency makes harmless.
Payment methods are provider tokens, never card numbers (``models/provider.py`` lists the
simulated provider's, and the faults they stand for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from models.base import Effect, Event, event_types
from models.provider import (
    PAYMENT_METHODS,
    Charge,
    PaymentProvider,
    ProviderUnavailable,
    Refund,
    SimulatedProvider,
)

__all__ = [
    "PAYMENT_EVENTS",
    "PAYMENT_METHODS",
    "CallFault",
    "Charge",
    "Finished",
    "PaymentFailed",
    "PaymentProvider",
    "PaymentRequested",
    "PaymentSucceeded",
    "ProviderAnswered",
    "ProviderCall",
    "ProviderUnavailable",
    "Refund",
    "RefundRequested",
    "Refunded",
    "RetryPolicy",
    "SimulatedProvider",
    "answer_of",
    "apply_payment_event",
    "backoff",
    "decide_payment",
    "finish_call",
    "needs_provider",
    "pending_call",
    "start_call",
]

#: The reason of a charge that gave up after its last try.
PROVIDER_UNAVAILABLE = "provider_unavailable"


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
    """What came of a charge or refund the payment step made for an order.

    ``fault`` is empty for an answer (``ok`` says which), else ``"error"`` (the provider
    raised) or ``"timeout"`` (no answer in time), with the error in ``reason``; ``attempt``
    is the try it answers for (0 for the first).
    """

    event_type = "provider_answered"
    order_id: str
    call: str  # "charge" or "refund"
    amount_cents: int
    ok: bool
    charge_id: str = ""
    refund_id: str = ""
    reason: str = ""
    fault: str = ""
    attempt: int = 0


PAYMENT_EVENTS = event_types(PaymentRequested, PaymentSucceeded, PaymentFailed,
                             RefundRequested, Refunded, ProviderAnswered)

#: Rows waiting for the provider's answer.
PENDING = frozenset({"charging", "refunding"})
#: Rows whose order was charged (a repeated charge request answers PaymentSucceeded).
CHARGED = frozenset({"succeeded", "refunding", "refunded", "refund_failed"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a faulted call is tried, and how long the first wait between tries is."""

    tries: int = 5
    base_backoff: float = 0.5


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """A call to make to the provider for an order: a charge or a refund.

    ``attempt`` counts the tries before it that faulted; ``not_before`` is the epoch second
    before which it is not made (0: at once).
    """

    call: str
    order_id: str
    amount_cents: int
    payment_method: str = ""
    charge_id: str = ""
    attempt: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class CallFault:
    """A call that got no answer: ``kind`` is "error" (it raised) or "timeout"."""

    kind: str
    error: str = ""


class Finished(NamedTuple):
    """The row after what came of a call, the events to send, the next try, and why the
    payment gave up ("" unless it did: then the agent dead-letters it)."""

    row: dict[str, Any] | None
    effects: list[Effect]
    retry: ProviderCall | None = None
    gave_up: str = ""


def backoff(policy: RetryPolicy, faults: int) -> float:
    """Return the seconds to wait before the next try after ``faults`` faulted tries."""
    return policy.base_backoff * 2 ** max(faults - 1, 0)


def apply_payment_event(row: Mapping[str, Any] | None, event: Event, now: float = 0.0,
                        policy: RetryPolicy = RetryPolicy()) -> Finished:
    """Return the payment row after a request (:func:`start_call`) or what came of a call
    (:func:`finish_call`), the events it causes, the call to make, and why it gave up."""
    if isinstance(event, ProviderAnswered):
        return finish_call(row, event, now, policy)
    new_row, effects, call = start_call(row, event)
    return Finished(new_row, effects, call)


def start_call(row: Mapping[str, Any] | None,
               event: Event) -> tuple[dict[str, Any] | None, list[Effect], ProviderCall | None]:
    """Return the row after a request, the events it causes, and the provider call to make.

    A new charge or refund marks the row pending and asks for the call; a request for a
    pending row asks for its next try again (it may have been lost with a worker; the
    provider is idempotent); a settled row answers with its stored outcome, as
    :func:`decide_payment`; a ``refund_failed`` row waits for an operator.
    """
    if isinstance(event, PaymentRequested):
        if row is None:
            pending = {"order_id": event.order_id, "amount_cents": event.amount_cents,
                       "payment_method": event.payment_method, "status": "charging",
                       "charge_id": "", "reason": "", "refunded_cents": 0, "refund_id": "",
                       **_fresh_tries()}
            return pending, [], _call_for(pending)
        if row["status"] == "charging":
            return dict(row), [], _call_for(row)
    if isinstance(event, RefundRequested) and row is not None:
        if needs_provider(row, event):
            pending = {**row, "status": "refunding", **_fresh_tries()}
            return pending, [], _call_for(pending)
        if row["status"] == "refunding":
            return dict(row), [], _call_for(row)
        if row["status"] in ("charging", "refund_failed"):
            # charging: the charge's answer comes first and the saga asks again;
            # refund_failed: dead-lettered, for an operator.
            return dict(row), [], None
    new_row, effects = decide_payment(row, event, None)
    return new_row, effects, None


def pending_call(row: Mapping[str, Any]) -> ProviderCall | None:
    """Return the call a pending row waits for (None if it waits for none)."""
    return _call_for(row) if row.get("status") in PENDING else None


def _fresh_tries() -> dict[str, Any]:
    return {"attempts": 0, "next_try_at": 0.0, "last_error": ""}


def _call_for(row: Mapping[str, Any]) -> ProviderCall:
    attempt, not_before = int(row.get("attempts", 0)), float(row.get("next_try_at", 0.0))
    if row["status"] == "charging":
        return ProviderCall("charge", row["order_id"], row["amount_cents"],
                            payment_method=row.get("payment_method", ""), attempt=attempt,
                            not_before=not_before)
    return ProviderCall("refund", row["order_id"], row["amount_cents"],
                        charge_id=row["charge_id"], attempt=attempt, not_before=not_before)


def answer_of(call: ProviderCall, answer: Charge | Refund | CallFault) -> ProviderAnswered:
    """Return the event that carries what came of ``call``: the provider's answer, or a fault."""
    if isinstance(answer, CallFault):
        ok, reason, fault = False, answer.error, answer.kind
    else:
        ok, reason, fault = answer.ok, answer.reason, ""
    return ProviderAnswered.new(
        order_id=call.order_id, call=call.call, amount_cents=call.amount_cents, ok=ok,
        charge_id=answer.charge_id if isinstance(answer, Charge) else "",
        refund_id=answer.refund_id if isinstance(answer, Refund) else "",
        reason=reason, fault=fault, attempt=call.attempt, correlation_id=call.order_id)


def finish_call(row: Mapping[str, Any] | None, answered: ProviderAnswered, now: float = 0.0,
                policy: RetryPolicy = RetryPolicy()) -> Finished:
    """Return what the provider's answer (or a fault at epoch second ``now``) makes of the row.

    An answer settles the pending row; a fault schedules the next try, or gives up after the
    last (see the module). What comes for a row that is not waiting for it (settled already:
    a second call's answer, a redelivery, a fault of another try) changes nothing.
    """
    if row is None or row["status"] != {"charge": "charging",
                                        "refund": "refunding"}.get(answered.call):
        return Finished(dict(row) if row else None, [])
    if answered.fault:
        return _after_fault(row, answered, now, policy)
    if answered.call == "charge":
        request = PaymentRequested(type=PaymentRequested.event_type,
                                   event_id=answered.event_id,
                                   occurred_at=answered.occurred_at,
                                   order_id=answered.order_id,
                                   amount_cents=row["amount_cents"],
                                   payment_method=row.get("payment_method", ""))
        charge = Charge(answered.ok, charge_id=answered.charge_id, reason=answered.reason)
        settled, effects = decide_payment(None, request, charge)
        assert settled is not None
        return Finished({**settled, "payment_method": row.get("payment_method", ""),
                         **_tries_of(row)}, effects)
    if not answered.ok:
        failed = {**row, "status": "refund_failed", "next_try_at": 0.0,
                  "last_error": answered.reason}
        return Finished(failed, [], None, f"refund of order {answered.order_id} refused by "
                                          f"the provider: {answered.reason}")
    refund = RefundRequested.new(order_id=answered.order_id)
    refunded, effects = decide_payment({**row, "status": "succeeded"}, refund,
                                       Refund(True, refund_id=answered.refund_id))
    return Finished(refunded, effects)


def _tries_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"attempts": row.get("attempts", 0), "next_try_at": 0.0,
            "last_error": row.get("last_error", "")}


def _after_fault(row: Mapping[str, Any], answered: ProviderAnswered, now: float,
                 policy: RetryPolicy) -> Finished:
    """Return the row after a faulted try: the next try scheduled, or the payment given up."""
    attempts = int(row.get("attempts", 0))
    if answered.attempt != attempts:
        return Finished(dict(row), [])  # another try's fault, counted already
    faults = attempts + 1
    error = f"{answered.fault}: {answered.reason}" if answered.reason else answered.fault
    if faults < policy.tries:
        waiting = {**row, "attempts": faults, "next_try_at": now + backoff(policy, faults),
                   "last_error": error}
        return Finished(waiting, [], _call_for(waiting))
    gave_up = (f"{answered.call} of order {answered.order_id} gave up after {faults} "
               f"tries: {error}")
    ended = {**row, "attempts": faults, "next_try_at": 0.0, "last_error": error}
    if answered.call == "refund":
        return Finished({**ended, "status": "refund_failed"}, [], None, gave_up)
    failed = {**ended, "status": "failed", "reason": PROVIDER_UNAVAILABLE}
    return Finished(failed, [_outcome(failed)], None, gave_up)


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
    if row["status"] in CHARGED:
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
