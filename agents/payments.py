"""Payments: charges and refunds through the provider, once per order, never waiting.

The payment step runs in the order's own step, by the saga's agent (agents/orders.py): the
order's row keeps its payment row (tables/payments.py), so the agent that moves an order also
moves its payment, and a charge the saga asks for is started in the same step, without a hop
through the payments topic. A request marks the payment pending and the provider is called
in the background; what came of the call returns on the payments topic (``ProviderAnswered``,
keyed by order id) and settles the payment, so the row keeps one writer and a slow provider
holds up nobody else (``models/payments.py``). A call that raised or outlived
``SHOP_PAYMENT_CALL_TIMEOUT`` comes back as a fault: the payment schedules the next try
with backoff, made here when its time comes, and after ``SHOP_PAYMENT_TRIES`` the payment
gives up and the fault's message is dead-lettered. A call lost with a worker is made again:
the saga asks again for an order still waiting, and after each rebalance every worker calls
again for the pending rows it owns (at their next try's time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from agents.topics import payments_topic
from app import app
from models.payments import (
    CallFault,
    Charge,
    PaymentProvider,
    PaymentRequested,
    ProviderAnswered,
    ProviderCall,
    Refund,
    RefundRequested,
    RetryPolicy,
    SimulatedProvider,
    answer_of,
    pending_call,
)
from runtime.tables import tables_ready
from tables.orders import open_index, orders
from tables.payments import payment_of

__all__ = ["PAYMENT_STEPS", "PaymentGaveUp", "call_again_after_rebalance", "call_provider",
           "note_settled", "provider"]

log = logging.getLogger(__name__)

#: The payment provider (the built-in simulation until a real one is configured).
provider: PaymentProvider = SimulatedProvider(slow_seconds=app.settings.payment_slow_seconds)

#: How faulted calls are tried again.
RETRIES = RetryPolicy(tries=app.settings.payment_tries, base_backoff=app.settings.payment_backoff)

#: Calls under way or waiting for their time in this process, by (call, order id, attempt).
_in_flight: dict[tuple[str, str, int], asyncio.Task[None]] = {}
#: The last try of each pending call whose outcome this process sent, by (call, order id): a
#: request or a rebalance that comes before that outcome is applied must not make it again.
#: An entry goes when the outcome is applied here; one applied by another worker (the order's
#: partition moved) would stay, so the oldest are forgotten past SENT_TRIES_LIMIT: by then
#: their outcomes were applied long ago.
_sent_tries: dict[tuple[str, str], int] = {}
SENT_TRIES_LIMIT = 10_000


#: The payment events a payment step handles (the outcomes on the topic are the saga's).
PAYMENT_STEPS = (PaymentRequested, RefundRequested, ProviderAnswered)


class PaymentGaveUp(Exception):
    """A charge or refund ran out of tries, or its refund was refused: dead-letter it."""


def note_settled(order_id: str, payment: Mapping[str, Any] | None) -> None:
    """Forget the tries sent for ``order_id``'s calls once its payment waits for none."""
    if payment is not None and pending_call(payment) is None:
        for kind in ("charge", "refund"):
            _sent_tries.pop((kind, order_id), None)


def call_provider(call: ProviderCall) -> None:
    """Make ``call`` in the background at its time, unless it is under way here already."""
    key = (call.call, call.order_id, call.attempt)
    if key in _in_flight or _sent_tries.get(key[:2], -1) >= call.attempt:
        return
    task = asyncio.get_running_loop().create_task(_call(call))
    _in_flight[key] = task
    task.add_done_callback(lambda _: _in_flight.pop(key, None))


async def _call(call: ProviderCall) -> None:
    wait = call.not_before - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    answer: Charge | Refund | CallFault
    try:
        answer = await asyncio.wait_for(_ask(call), app.settings.payment_call_timeout)
    except TimeoutError:
        answer = CallFault("timeout", f"no answer within {app.settings.payment_call_timeout} s")
    except Exception as exc:
        log.warning("%s of order %s (try %d) failed: %s: %s", call.call, call.order_id,
                    call.attempt + 1, type(exc).__name__, exc)
        answer = CallFault("error", f"{type(exc).__name__}: {exc}")
    try:
        await payments_topic.send(key=call.order_id, value=answer_of(call, answer).dumps())
        note_sent_try(call.call, call.order_id, call.attempt)
    except Exception:  # the row stays pending: the next request or rebalance calls again
        log.exception("what came of the %s of order %s could not be sent", call.call,
                      call.order_id)


def note_sent_try(kind: str, order_id: str, attempt: int) -> None:
    """Remember that the outcome of try ``attempt`` of a call was sent, the oldest forgotten
    past SENT_TRIES_LIMIT."""
    key = (kind, order_id)
    _sent_tries.pop(key, None)  # to the end: the newest
    _sent_tries[key] = attempt
    while len(_sent_tries) > SENT_TRIES_LIMIT:
        del _sent_tries[next(iter(_sent_tries))]


async def _ask(call: ProviderCall) -> Charge | Refund:
    if call.call == "charge":
        return await provider.charge(call.order_id, call.amount_cents, call.payment_method,
                                     order_id=call.order_id)
    return await provider.refund(f"refund:{call.order_id}", call.charge_id, call.amount_cents,
                                 order_id=call.order_id)


#: The rebalance after which this worker last looked for pending rows.
_rebalances_seen = -1


@app.timer(interval=1.0)
async def call_again_after_rebalance() -> None:
    """After each rebalance, call again for the pending payments this worker now owns.

    A worker that died between marking a row pending and the provider's answer took the call
    with it; the refund of a cancelled order has nobody else to ask again. Every order whose
    payment waits for a call is in the index of open orders (agents.orders.track_deadline),
    so the look reads the open orders' rows, not every order the worker owns.
    """
    global _rebalances_seen
    if not tables_ready(app) or app.rebalancing_count == _rebalances_seen:
        return
    _rebalances_seen = app.rebalancing_count
    again = 0
    for order_id in list(open_index.current(app.rebalancing_count)):
        payment = payment_of(orders.get(order_id))
        call = pending_call(payment) if payment else None
        if call is not None:
            call_provider(call)
            again += 1
    if again:
        log.info("payments: called the provider again for %d pending payment(s)", again)
