"""Orders agent: the saga. Applies each order event to the order and sends what it causes.

It consumes the ``orders`` and ``payments`` topics (both keyed by order id), so an order's
row is always written from the same partition number. The row keeps the order's payment too
(tables/payments.py): the payment step, agents/payments.py, runs here in the order's step. A
timer asks again for answers an order may have lost in a worker's crash (see
:func:`chase_open_orders`). Another timer, on every worker, asks to expire the orders it
owns that waited longer than SHOP_ORDER_TTL for stock or payment (see
:func:`expire_on_time`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from faust.types import StreamT

from agents.batches import fold_batches
from agents.dead_letters import event_type_of, for_each_event
from agents.payments import PAYMENT_STEPS, RETRIES, PaymentGaveUp, call_provider, note_settled
from agents.sending import send_all, to_sends
from agents.topics import inventory_topic, order_saga_topics, orders_topic, user_orders_topic
from app import app
from models.base import Event, decode_event, utcnow
from models.inventory import StockRejected, StockReserved
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    RETIRED_ORDER_TYPES,
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
from models.payments import (
    PAYMENT_EVENTS,
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
    ProviderCall,
    Refunded,
    RefundRequested,
    RetryPolicy,
    apply_payment_event,
    pending_call,
)
from models.promotions import PromotionRedeemed, PromotionRefused
from runtime.tables import tables_ready
from tables.orders import open_index, open_orders, orders, orders_by_user, watchers
from tables.payments import PAYMENT, payment_of
from tables.replay import RECENT_IDS, Position, Row, Send, decide_once

log = logging.getLogger(__name__)

__all__ = [
    "chase_open_orders",
    "expire_on_time",
    "expire_overdue_orders",
    "index_orders_by_user",
    "run_order_saga",
    "saga_step",
    "track_deadline",
    "work_pending",
]

#: The events that move an order (the others on these topics are for other agents).
SAGA_EVENTS = (OrderPlaced, StockReserved, StockRejected, PaymentSucceeded, PaymentFailed,
               Refunded, CancelRequested, ShipRequested, DeliverRequested, ExpireRequested,
               PromotionRedeemed, PromotionRefused)

#: Types on the saga's topics that are for other agents or readers, or retired (skipped
#: undecoded).
NOT_FOR_THE_SAGA = frozenset({*(t for t, cls in ORDER_EVENTS.items() if cls is OrderUpdate),
                              *RETIRED_ORDER_TYPES})

#: How often open orders may be checked for lost answers, in seconds.
CHASE_S = 1.0
#: How long an order that waited across a rebalance waits before its request is sent again.
CHASE_AFTER_S = 5.0
CHASE_AFTER = timedelta(seconds=CHASE_AFTER_S)
#: For how long after a rebalance orders waiting across it are looked for, in seconds.
CHASE_WINDOW_S = 60.0
#: Without a rebalance, an order waiting this long is asked again all the same (a safety net),
#: looked for every SAFETY_SCAN_S.
CHASE_SAFETY = timedelta(seconds=60)
SAFETY_SCAN_S = 15.0



async def apply_saga_event(event: Any, position: Position) -> None:
    """Move the order ``event`` is about (and its payment), once, and send what that causes."""
    if not isinstance(event, (*SAGA_EVENTS, *PAYMENT_STEPS)):
        return
    step = saga_step(orders, event, position, utcnow(), RETRIES)
    for order_id, row in step.rows:
        track_deadline(order_id, row)
        watchers.changed(order_id, row)
    if step.paid:  # the row as the step left it (read only if the step wrote nothing)
        after = step.rows[0][1] if step.rows else orders.get(event.order_id)
        note_settled(event.order_id, payment_of(after))
    await send_all(step.sends)
    for call in step.calls:
        call_provider(call)
    if step.gave_up:
        raise PaymentGaveUp(step.gave_up)  # for_each_event dead-letters this message


class SagaStep(NamedTuple):
    """What one event did to its order's row: the messages to send, the row if the step wrote
    it or the event was a redelivery (order id, row), the provider calls to make, whether it
    was a payment step, and why the payment gave up ("" unless it did)."""

    sends: list[Send]
    rows: list[tuple[str, Row]]
    calls: list[ProviderCall]
    paid: bool
    gave_up: str


#: Payment events types the saga hands to its payment step when an order's decision asks for
#: them, instead of sending them: the payment row lives in the order's row.
PAYMENT_REQUESTS: dict[str, type[Event]] = {PaymentRequested.event_type: PaymentRequested,
                    RefundRequested.event_type: RefundRequested}
#: Payment outcomes a payment step applies to the order at once (and still sends, for the
#: topic's other readers).
PAYMENT_OUTCOMES: dict[str, type[Event]] = {
    cls.event_type: cls for cls in (PaymentSucceeded, PaymentFailed, Refunded)}


def saga_step(table: MutableMapping[str, Row], event: Any, position: Position, now: datetime,
              policy: RetryPolicy) -> SagaStep:
    """Apply a saga or payment event to its order's row, payment included, once.

    The order's row keeps its payment row (tables/payments.py), so a step writes one row
    once, with one changelog record. An order's decision that asks for a charge or a refund
    starts it on the payment in the same step; a payment step (a request or the provider's
    answer from the payments topic) applies its outcome to the order in the same step, and
    still sends it to the payments topic for its readers. Each step applies the payment rules
    at most once: what a payment step's outcome makes the order ask of its payment (the
    refund of a charge that came after the order ended) goes through the payments topic.
    A payment event for an order without a row changes nothing.
    """
    calls: list[ProviderCall] = []
    gave_up: list[str] = []
    written: list[Row | None] = []  # [the row the step wrote, or None], once the step ran
    paid = isinstance(event, PAYMENT_STEPS)

    def step(row: Row | None) -> tuple[Row | None, list[Send]]:
        written.append(None)
        payment = payment_of(row)
        sends: list[Send] = []
        if paid:
            finished = apply_payment_event(payment, event, now.timestamp(), policy)
            payment = finished.row
            calls.extend([finished.retry] if finished.retry else [])
            gave_up.extend([finished.gave_up] if finished.gave_up else [])
            sends = to_sends(finished.effects)  # every outcome goes to the topic too
            order_row = row
            for send in list(sends):
                outcome = _payment_event(send, PAYMENT_OUTCOMES)
                if outcome is not None:
                    order_row, order_sends = _order_step(order_row, outcome, now)
                    sends.extend(order_sends)
        else:
            order_row, order_sends = _order_step(row, event, now)
            for send in order_sends:
                request = _payment_event(send, PAYMENT_REQUESTS)
                if request is None:
                    sends.append(send)
                    continue
                started = apply_payment_event(payment, request, now.timestamp(), policy)
                payment = started.row
                sends.extend(to_sends(started.effects))
                calls.extend([started.retry] if started.retry else [])
        if order_row is None:  # no order: no payment to keep, and no call to make for one
            calls.clear()
            gave_up.clear()
            return None, sends
        if order_row is row and payment == payment_of(row):
            return None, sends  # nothing changes: nothing to write (a repeated answer)
        written[0] = {**order_row, PAYMENT: payment} if payment else order_row
        return written[0], sends

    sends = decide_once(table, event.order_id, position, step, keep_sends=RECENT_IDS)
    # A redelivery the guard skipped (no step ran) reports the row all the same: the worker
    # may have died after writing it and before the open orders heard of it.
    row = written[0] if written else table.get(event.order_id)
    rows = [(event.order_id, row)] if row is not None else []
    return SagaStep(sends, rows, calls, paid, gave_up[0] if gave_up else "")


def _order_step(row: Row | None, event: Any, now: datetime) -> tuple[Row | None, list[Send]]:
    """Return an order's row after a saga event (``row`` itself if nothing changes: a
    repeated answer) and what the event causes."""
    order = Order.from_row(row) if row else None
    decision = decide(order, event, now)
    if decision.order == order and not decision.effects:
        return row, []
    new_row = decision.order.to_row() if decision.order else None
    return (new_row if new_row is not None else row), to_sends(decision.effects)


def _payment_event(send: Send, types: dict[str, type[Event]]) -> Any:
    """Return the payment event ``send`` carries if its type is one of ``types``, else None."""
    topic, _, value = send
    if topic != "payments":
        return None
    kind = event_type_of(value.encode())
    return decode_event(types, value.encode()) if kind in types else None


def work_pending(row: Row) -> bool:
    """Return True if an order's row waits for something: stock, payment, or the provider's
    answer to its payment's call."""
    payment = payment_of(row)
    return row["status"] in ACTIVE or (payment is not None and pending_call(payment) is not None)


def track_deadline(order_id: str, row: dict[str, Any]) -> None:
    """Keep ``open_orders`` (and its index) to the orders with work pending: still waiting
    for stock or payment, or for the provider's answer to their payment's call (a charge that
    came after the order ended, a refund)."""
    if work_pending(row):
        placed_at = row["history"][0]["at"]
        deadline = (datetime.fromisoformat(placed_at)
                    + timedelta(seconds=app.settings.order_ttl)).isoformat()
        if order_id not in open_orders:
            open_orders[order_id] = deadline
        open_index.note(order_id, deadline, row["history"][-1]["at"])
    else:
        open_index.drop(order_id)
        if order_id in open_orders:
            del open_orders[order_id]


@app.agent(order_saga_topics, name="orders.saga")
async def run_order_saga(stream: StreamT[bytes]) -> None:
    """Consume order and payment events into the orders table (payments included)."""
    await for_each_event(stream, {**ORDER_EVENTS, **PAYMENT_EVENTS}, apply_saga_event,
                         agent="orders.saga", skip=NOT_FOR_THE_SAGA)


def indexing(event: OrderIndexed) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    """Return the update that adds the order to its customer's index."""
    return lambda row: index_order(row, event)


@app.agent(user_orders_topic, name="orders.by-user")
async def index_orders_by_user(stream: StreamT[bytes]) -> None:
    """Consume the user-orders topic, in batches, into each customer's order index.

    Without a linger: ``POST /api/orders`` answers once the customer's list has the order."""
    await fold_batches(stream, OrderIndexed, orders_by_user, lambda event: event.user_id,
                       indexing, agent="orders.by-user", within=None)


class AskAgain:
    """When an order may be asked again: CHASE_AFTER_S after it was last asked, then twice
    as long after each time (5, 10, 20, 40 s, at most MAX_BACKOFF times CHASE_AFTER_S).

    After a crash, thousands of orders wait behind the backlog the surviving worker drains,
    and every one of them looks as if it lost an answer. Asking each every 5 s piled
    duplicate requests on that worker; backing off keeps asking the few that really lost one.
    """

    def __init__(self) -> None:
        self._asked: dict[str, tuple[float, int]] = {}  # order id -> (last asked, times)

    def due(self, order_id: str, clock: float) -> bool:
        """Return True if ``order_id`` may be asked again at monotonic time ``clock``."""
        last = self._asked.get(order_id)
        if last is None:
            return True
        at, times = last
        return clock - at >= CHASE_AFTER_S * 2 ** min(times - 1, MAX_BACKOFF_DOUBLINGS)

    def note(self, order_id: str, clock: float) -> None:
        """Remember that ``order_id`` was asked at ``clock``."""
        _, times = self._asked.get(order_id, (clock, 0))
        self._asked[order_id] = (clock, times + 1)

    def forget_old(self, clock: float) -> None:
        """Forget orders not asked for FORGET_AFTER_S (settled, or owned elsewhere now)."""
        for old in [k for k, (at, _) in self._asked.items() if clock - at > FORGET_AFTER_S]:
            del self._asked[old]


#: An order is asked again after CHASE_AFTER_S, doubling up to this many times (80 s).
MAX_BACKOFF_DOUBLINGS = 4
#: An order not asked again for this long starts over.
FORGET_AFTER_S = 60 * CHASE_AFTER_S
#: The open orders looked at between two yields to the event loop (a scan of thousands
#: must not hold the worker's other work up for seconds).
SCAN_SLICE = 200

#: Orders chased / asked to expire recently.
_chased = AskAgain()
_expiring = AskAgain()


@dataclass
class ChaseState:
    """When this worker last saw a rebalance, and when it last looked for long waits."""

    rebalances_seen: int = -1
    rebalanced_at: datetime | None = None
    window_until: float = 0.0
    safety_scan_at: float = float("-inf")

    def note_rebalance(self, count: int, now: datetime, clock: float) -> None:
        """Open a chase window if the app rebalanced since the last look."""
        if count != self.rebalances_seen:
            self.rebalances_seen = count
            self.rebalanced_at = now
            self.window_until = clock + CHASE_WINDOW_S

    def scan_due(self, clock: float) -> bool:
        """Return True if the open orders are to be looked at now."""
        if clock < self.window_until:
            return True
        if clock - self.safety_scan_at >= SAFETY_SCAN_S:
            self.safety_scan_at = clock
            return True
        return False

    def hold_window(self, clock: float) -> None:
        """Keep an open window open CHASE_WINDOW_S past ``clock`` (the worker is behind)."""
        if clock < self.window_until:
            self.window_until = max(self.window_until, clock + CHASE_WINDOW_S)

    def lost(self, last_change: datetime, now: datetime, clock: float,
             behind: bool = False) -> bool:
        """Return True if an order unchanged since ``last_change`` may have lost an answer.

        While the worker is ``behind`` (a backlog on the saga's topics), an order waiting
        across the rebalance is not taken as lost: its answer may be in the backlog.
        """
        waited = now - last_change
        across = (not behind and clock < self.window_until and self.rebalanced_at is not None
                  and last_change < self.rebalanced_at and waited > CHASE_AFTER)
        return across or waited > CHASE_SAFETY


#: Messages of the saga's topics on this worker not yet taken by an agent, above which the
#: worker is behind: after a crash the surviving worker drains thousands of messages, and
#: every order waiting behind them looks as if it had lost an answer (chasing them all took
#: 2.7 s a scan and doubled the backlog with duplicate requests).
CHASE_BACKLOG = 500
#: The topics whose backlog holds an order's answers.
SAGA_TOPICS = frozenset({*order_saga_topics.topics, *inventory_topic.topics})


def backlog(app: Any, topics: frozenset[str] = SAGA_TOPICS) -> int:
    """Return how many messages of ``topics`` this worker has not handed to an agent yet
    (the partition's end offset less the last offset an agent took, or the committed one)."""
    monitor = app.monitor
    reads = monitor.tp_read_offsets
    committed = app.consumer._committed_offset
    total = 0
    for tp in app.consumer.assignment():
        if tp.topic not in topics:
            continue
        end = monitor.tp_end_offsets.get(tp)
        if end is None:
            continue
        read = reads.get(tp)
        done = max(read + 1 if read is not None else 0, committed.get(tp) or 0)
        total += max(0, end - done)
    return total


_chase_state = ChaseState()


@app.timer(interval=CHASE_S)
async def chase_open_orders() -> None:
    """Ask again for answers an order may have lost in a worker's crash.

    An answer is lost only when a worker dies between writing a row and sending what the row
    caused; every worker of the group then rebalances. So for CHASE_WINDOW_S after each
    rebalance, orders unchanged since before it that have waited CHASE_AFTER_S are asked again;
    otherwise only orders waiting longer than CHASE_SAFETY_S are, looked for every
    SAFETY_SCAN_S. (Chasing every slow order would pile duplicate requests on a worker that
    is merely busy, and make it busier.) While the worker is behind on the saga's topics
    (more than CHASE_BACKLOG messages not yet taken), the window waits: the answers may be in
    the backlog. Each order is asked again less and less often (:class:`AskAgain`). Runs on
    every worker over the orders it owns, and only while the worker is ready: during a
    recovery a row may be behind.
    """
    if not tables_ready(app):
        return
    now = utcnow()
    clock = time.monotonic()
    _chase_state.note_rebalance(app.rebalancing_count, now, clock)
    behind = backlog(app) > CHASE_BACKLOG
    if behind:
        _chase_state.hold_window(clock)
    if not _chase_state.scan_due(clock):
        return
    sends: list[Send] = []
    open_now = list(open_index.current(app.rebalancing_count).items())
    for n, (order_id, (_, changed_at)) in enumerate(open_now, 1):
        if n % SCAN_SLICE == 0:
            await asyncio.sleep(0)
        if not _chased.due(order_id, clock):
            continue
        if not _chase_state.lost(datetime.fromisoformat(changed_at), now, clock, behind):
            continue
        row = orders.get(order_id)
        if row is None or row["status"] not in ACTIVE:
            continue
        _chased.note(order_id, clock)
        sends.extend(to_sends(chase(Order.from_row(row))))
    _chased.forget_old(clock)
    await send_all(sends)


@app.timer(interval=app.settings.task_expire_orders_every, name="orders.expire")
async def expire_on_time() -> None:
    """Ask to expire the overdue orders this worker owns (every SHOP_TASK_EXPIRE_ORDERS_EVERY).

    Every worker runs it over its own partitions, so no message has to reach each partition's
    owner: the orders topic carries order events only. Outside any event, so a table read
    sees every partition this worker owns (inside an event, Faust's RocksDB store reads that
    event's partition only). Only while the worker is ready: during a recovery a row may be
    behind. An order is found again at every look until its expiry is applied, so a request
    lost in a crash is made again (:class:`AskAgain` spaces the repeats).
    """
    if not tables_ready(app):
        return
    try:
        await expire_overdue_orders()
    except Exception:  # the next look tries again; an exception would end the timer
        log.exception("looking for overdue orders failed; the next look tries again")


async def expire_overdue_orders() -> int:
    """Ask to expire the open orders this worker owns that are past their deadline.

    The saga's expiry is idempotent by state, so asking twice is harmless.
    """
    clock = time.monotonic()
    at = utcnow()
    now = at.isoformat()
    if not open_index.may_be_due(app.rebalancing_count, now):
        return 0
    # The soonest time an open order is due (or due to be asked again), to skip the sweeps
    # before it: with thousands of orders open, looking at each every second costs.
    soonest: str | None = None
    again = (at + CHASE_AFTER).isoformat()
    expired = 0
    for order_id, (deadline, _) in list(open_index.current(app.rebalancing_count).items()):
        if deadline > now:
            soonest = deadline if soonest is None else min(soonest, deadline)
            continue
        row = orders.get(order_id)
        if row is None or row["status"] not in ACTIVE:
            continue
        soonest = again if soonest is None else min(soonest, again)  # still open then?
        if not _expiring.due(order_id, clock):
            continue
        _expiring.note(order_id, clock)
        expire = ExpireRequested.new(order_id=order_id, correlation_id=order_id)
        await orders_topic.send(key=order_id, value=expire.dumps())
        expired += 1
    open_index.look_again_at(soonest)
    _expiring.forget_old(clock)
    if expired:
        log.info("%d overdue order(s) asked to expire", expired)
    return expired
