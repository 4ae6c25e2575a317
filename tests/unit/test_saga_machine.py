"""The whole order saga in memory, driven by hypothesis under random interleavings.

``Shop`` plays the three services the way the agents do, with the pure rules only: the orders
agent applies ``models.orders.decide``, the inventory agent applies ``models.inventory``'s
rules to a ``Stock`` per sku and answers reservations on the orders topic, and the payments
agent keeps one payment row per order (a replayed request re-answers the stored outcome).
Every message goes through one in-memory bus of pending effects; the state machine delivers
any pending message (not first-in first-out), delivers messages again (at-least-once), places
orders, and plays the API's cancel, ship and deliver, the scheduler's expiry and the admin's
restock. The invariants of DESIGN.md's "Order saga" are checked after every step, and, once
the bus is drained, that every order settled and that stock and money add up.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from models.base import Event
from models.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    Restock,
    ReturnStock,
    Stock,
    commit,
    release,
    reserve,
    restock,
    return_sold,
)
from models.orders import (
    ACTIVE,
    SETTLED,
    CancelRequested,
    DeliverRequested,
    Effect,
    ExpireRequested,
    Order,
    OrderLine,
    OrderPlaced,
    ShipRequested,
    StockRejected,
    StockReserved,
    decide,
    refusal,
)
from models.payments import (
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
    Refunded,
    RefundRequested,
)

SKUS = ("sku-a", "sku-b", "sku-c")
PRICES = {"sku-a": 1250, "sku-b": 399, "sku-c": 7000}
USERS = ("u-ann", "u-bob", "u-cy")
#: pm_card_ok twice: most orders should get as far as a charge.
METHODS = ("pm_card_ok", "pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds")
DECLINES = {"pm_card_declined": "card_declined",
            "pm_card_insufficient_funds": "insufficient_funds"}
#: Statuses whose order keeps its money and its stock.
PAID = frozenset({"confirmed", "shipped", "delivered"})
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@dataclass
class PaymentRow:
    """The payments agent's row for one order."""

    order_id: str
    amount_cents: int
    ok: bool
    charge_id: str = ""
    reason: str = ""
    refunded_cents: int = 0
    refund_id: str = ""

    @property
    def charged_cents(self) -> int:
        return self.amount_cents if self.ok else 0


class Shop:
    """The orders, inventory and payments services in memory, around one bus."""

    def __init__(self, initial: Mapping[str, int], *, inventory_in_order: bool = False) -> None:
        #: Deliver each sku's inventory commands once and in the order they were sent (as
        #: Kafka's partition order and the agents' replay guard do), not in any order.
        self.inventory_in_order = inventory_in_order
        self.initial = dict(initial)
        self.restocked = dict.fromkeys(initial, 0)
        self.stock = {sku: restock(Stock(sku), n, initial=True) if n else Stock(sku)
                      for sku, n in initial.items()}
        self.orders: dict[str, Order] = {}
        self.placed: dict[str, OrderPlaced] = {}
        self.payments: dict[str, PaymentRow] = {}
        self.charges: Counter[str] = Counter()  # provider charges per order
        self.refunds: Counter[str] = Counter()  # provider refunds per order
        self.pending: list[Effect] = []
        self.delivered: list[Effect] = []
        self.clock = T0

    # -- the bus -----------------------------------------------------------------------------

    def publish(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            event = effect.event
            expected_key = event.sku if effect.topic == "inventory" else event.order_id
            assert effect.topic in ("orders", "inventory", "payments"), effect
            assert effect.key == expected_key, f"{effect.topic} keyed {effect.key!r}: {event!r}"
            self.pending.append(effect)

    def deliverable(self) -> list[int]:
        """Return the indices of the pending messages that may be delivered next."""
        if not self.inventory_in_order:
            return list(range(len(self.pending)))
        first: set[str] = set()
        indices = []
        for i, effect in enumerate(self.pending):
            if effect.topic == "inventory":
                if effect.key in first:
                    continue
                first.add(effect.key)
            indices.append(i)
        return indices

    def redeliverable(self) -> list[Effect]:
        """Return the messages that may come again (any, or any but inventory commands)."""
        seen = self.pending + self.delivered
        if self.inventory_in_order:
            return [effect for effect in seen if effect.topic != "inventory"]
        return seen

    def deliver(self, index: int) -> None:
        effect = self.pending.pop(index)
        self.delivered.append(effect)
        self.clock += timedelta(seconds=1)
        event = effect.event
        if effect.topic == "inventory":
            self.publish(self.inventory(event))
        elif isinstance(event, PaymentRequested | RefundRequested):
            self.publish(self.payment(event))
        else:
            self.publish(self.order(event))

    def redeliver(self, effect: Effect) -> None:
        self.pending.append(effect)

    def drain(self, rnd: random.Random, *, duplicates: int = 0) -> None:
        """Deliver everything in a random order, with up to ``duplicates`` redeliveries."""
        steps = 0
        while self.pending:
            steps += 1
            assert steps < 5_000, "the saga does not come to rest"
            again = self.redeliverable()
            if duplicates and again and rnd.random() < 0.15:
                duplicates -= 1
                self.redeliver(again[rnd.randrange(len(again))])
            ready = self.deliverable()
            self.deliver(ready[rnd.randrange(len(ready))])
            self.check_stock()

    # -- the API, the scheduler, the admin -----------------------------------------------------

    def place(self, order_id: str, user_id: str, lines: list[tuple[str, int]], method: str,
              discount_cents: int = 0) -> None:
        items = [OrderLine(sku=sku, quantity=qty, unit_price_cents=PRICES[sku])
                 for sku, qty in lines]
        subtotal = sum(PRICES[sku] * qty for sku, qty in lines)
        discount = min(discount_cents, subtotal - 1)
        placed = OrderPlaced.new(order_id=order_id, user_id=user_id, items=items,
                                 subtotal_cents=subtotal, discount_cents=discount,
                                 total_cents=subtotal - discount, payment_method=method,
                                 correlation_id=order_id)
        self.placed[order_id] = placed
        self.publish([Effect("orders", order_id, placed)])

    def request(self, event: Event) -> None:
        self.publish([Effect("orders", event.order_id, event)])

    def add_stock(self, sku: str, quantity: int) -> None:
        self.publish([Effect("inventory", sku, Restock.new(sku=sku, quantity=quantity))])

    # -- the services ------------------------------------------------------------------------

    def order(self, event: Event) -> list[Effect]:
        """The orders agent: the saga's decision, written to the orders table."""
        before = self.orders.get(event.order_id)
        decision = decide(before, event, self.clock)
        if decision.order is None:
            assert before is None, f"{event.type} lost order {event.order_id}"
        else:
            assert decision.order.id == event.order_id
            self.orders[event.order_id] = decision.order
        return decision.effects

    def inventory(self, event: Event) -> list[Effect]:
        """The inventory agent: the stock rules, reservations answered on the orders topic."""
        sku = event.sku
        stock = self.stock[sku]
        answers: list[Effect] = []
        if isinstance(event, ReserveStock):
            stock, ok = reserve(stock, event.order_id, event.quantity)
            answer: Event
            if ok:
                answer = StockReserved.new(order_id=event.order_id, sku=sku,
                                           quantity=event.quantity,
                                           correlation_id=event.order_id)
            else:
                answer = StockRejected.new(order_id=event.order_id, sku=sku,
                                           requested=event.quantity, available=stock.available,
                                           correlation_id=event.order_id)
            answers.append(Effect("orders", event.order_id, answer))
        elif isinstance(event, ReleaseStock):
            stock = release(stock, event.order_id)
        elif isinstance(event, CommitStock):
            stock = commit(stock, event.order_id)
        elif isinstance(event, ReturnStock):
            stock = return_sold(stock, event.order_id, event.quantity)
        elif isinstance(event, Restock):
            stock = restock(stock, event.quantity, initial=event.initial)
            self.restocked[sku] += event.quantity
        else:  # pragma: no cover - a wrong topic is a bug of decide
            raise AssertionError(f"{event.type} sent to the inventory topic")
        self.stock[sku] = stock
        return answers

    def payment(self, event: PaymentRequested | RefundRequested) -> list[Effect]:
        """The payments agent: one row per order, the provider called at most once each way."""
        oid = event.order_id
        row = self.payments.get(oid)
        answer: Event
        if isinstance(event, PaymentRequested):
            if row is None:
                reason = DECLINES.get(event.payment_method, "")
                row = PaymentRow(oid, event.amount_cents, ok=not reason, reason=reason,
                                 charge_id="" if reason else f"ch_{oid}")
                self.payments[oid] = row
                if row.ok:
                    self.charges[oid] += 1
            if row.ok:
                answer = PaymentSucceeded.new(order_id=oid, amount_cents=row.amount_cents,
                                              charge_id=row.charge_id, correlation_id=oid)
            else:
                answer = PaymentFailed.new(order_id=oid, reason=row.reason, correlation_id=oid)
            return [Effect("payments", oid, answer)]
        if row is None or not row.ok:
            return []  # nothing was charged, nothing to give back
        if not row.refunded_cents:
            row.refunded_cents, row.refund_id = row.amount_cents, f"re_{oid}"
            self.refunds[oid] += 1
        answer = Refunded.new(order_id=oid, amount_cents=row.refunded_cents,
                              refund_id=row.refund_id, correlation_id=oid)
        return [Effect("payments", oid, answer)]

    # -- what must hold ------------------------------------------------------------------------

    def check_stock(self) -> None:
        """Checked after every step: stock counts never negative, nothing appears or vanishes."""
        for sku, stock in self.stock.items():
            counts = (stock.available, stock.reserved, stock.sold)
            assert min(counts) >= 0, f"{sku} went negative: {stock}"
            assert stock.initial == self.initial[sku]
            assert stock.restocked == self.restocked[sku]
            assert self.initial[sku] + self.restocked[sku] == sum(counts), f"{sku}: {stock}"
            assert stock.reserved == sum(stock.holds.values()), f"{sku}: {stock}"
            assert all(q > 0 for q in stock.holds.values()), f"{sku}: {stock}"

    def check_orders(self) -> None:
        """Checked after every step: each order's own bookkeeping agrees with its status."""
        for oid, order in self.orders.items():
            assert order.history[-1][0] == order.status, order
            assert order.reserved <= set(order.skus), order
            if order.status not in ACTIVE:
                assert not order.reserved, order
            if order.status in PAID:
                assert order.charged_cents == order.total_cents, order
            assert self.charges[oid] <= 1, f"{oid} charged {self.charges[oid]} times"
            assert self.refunds[oid] <= 1, f"{oid} refunded {self.refunds[oid]} times"

    def check_settled(self) -> None:
        """Checked once the bus is drained: every order ended, stock and money add up."""
        assert not self.pending
        assert set(self.orders) == set(self.placed), "an order was placed but never processed"
        for oid, order in self.orders.items():
            assert order.status in SETTLED, f"{oid} is still {order.status}"
        live = {oid for oid, o in self.orders.items() if o.status in ACTIVE}
        for sku, stock in self.stock.items():
            leaked = set(stock.holds) - live
            assert not leaked, f"{sku} still holds stock for ended orders {leaked}: {stock}"
        for sku, stock in self.stock.items():
            bought = sum(qty for o in self.orders.values() if o.status in PAID
                         for s, qty, _ in o.items if s == sku)
            assert stock.sold == bought, f"{sku}: sold {stock.sold}, paid orders hold {bought}"
        kept = sum(row.charged_cents - row.refunded_cents for row in self.payments.values())
        paid = sum(o.total_cents for o in self.orders.values() if o.status in PAID)
        assert kept == paid, f"kept {kept} cents, paid orders are worth {paid}"
        for oid, order in self.orders.items():
            row = self.payments.get(oid)
            charged, refunded = (row.charged_cents, row.refunded_cents) if row else (0, 0)
            if order.status in PAID:
                assert (charged, refunded) == (order.total_cents, 0), (order, row)
            else:
                assert charged == refunded, f"{oid} is {order.status}: {row}"
            assert (order.charged_cents, order.refunded_cents) == (charged, refunded), (
                order, row)


# -- the state machine ---------------------------------------------------------------------

#: (user, lines, payment method, discount): 1-3 distinct skus, 1-4 of each.
NewOrder = tuple[str, list[tuple[str, int]], str, int]
order_strategy: st.SearchStrategy[NewOrder] = st.tuples(
    st.sampled_from(USERS),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3,
             unique_by=lambda line: line[0]),
    st.sampled_from(METHODS),
    st.sampled_from((0, 0, 150)),
)


class SagaMachine(RuleBasedStateMachine):
    """Orders, answers and redeliveries in any interleaving; the saga must stay whole."""

    #: See ``Shop.inventory_in_order``.
    INVENTORY_IN_ORDER = False

    shop: Shop
    rnd: random.Random

    @initialize(initial=st.fixed_dictionaries({sku: st.integers(0, 8) for sku in SKUS}),
                first=st.lists(order_strategy, min_size=1, max_size=3),
                rnd=st.randoms(use_true_random=False))
    def open_shop(self, initial: dict[str, int], first: list[NewOrder],
                  rnd: random.Random) -> None:
        """Stock the shop scarcely and take the first orders (every example has some)."""
        self.shop = Shop(initial, inventory_in_order=self.INVENTORY_IN_ORDER)
        self.rnd = rnd
        self.count = 0
        for new in first:
            self.place_order(*new)

    def orders_where(self, wanted: object) -> list[str]:
        return sorted(oid for oid, o in self.shop.orders.items() if wanted(o))  # type: ignore[operator]

    @rule(new=order_strategy)
    def place_a_new_order(self, new: NewOrder) -> None:
        self.place_order(*new)

    def place_order(self, user: str, lines: list[tuple[str, int]], method: str,
                    discount: int) -> None:
        self.count += 1
        self.shop.place(f"o{self.count}", user, lines, method, discount)

    @precondition(lambda self: self.shop.pending)
    @rule(data=st.data(), count=st.integers(1, 10))
    def deliver(self, data: st.DataObject, count: int) -> None:
        """Deliver up to ``count`` pending messages, each one chosen among all pending."""
        for _ in range(count):
            if not self.shop.pending:
                break
            self.shop.deliver(data.draw(st.sampled_from(self.shop.deliverable()), label="index"))
            self.shop.check_stock()

    @precondition(lambda self: self.shop.redeliverable())
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self.shop.redeliver(data.draw(st.sampled_from(self.shop.redeliverable()), label="again"))

    def requests(self) -> list[tuple[str, str]]:
        """Return what the API, the scheduler and the admin may ask now: (order id, action)."""
        asks = []
        for oid, order in sorted(self.shop.orders.items()):
            asks += [(oid, action) for action in ("cancel", "ship", "deliver")
                     if refusal(order, action) is None]
            if order.status in ACTIVE:
                asks.append((oid, "expire"))
        return asks

    @precondition(lambda self: self.requests())
    @rule(data=st.data(), by=st.sampled_from(("", "admin")))
    def request(self, data: st.DataObject, by: str) -> None:
        """Cancel, ship or deliver as the API allows it now, or expire a placed/reserved order.

        The request goes on the bus: by the time it arrives, the order may have moved on.
        """
        oid, action = data.draw(st.sampled_from(self.requests()), label="request")
        event(f"requested {action} of a {self.shop.orders[oid].status} order")
        kinds = {"cancel": CancelRequested, "ship": ShipRequested,
                 "deliver": DeliverRequested, "expire": ExpireRequested}
        fields = {"by": by} if action == "cancel" else {}
        self.shop.request(kinds[action].new(order_id=oid, correlation_id=oid, **fields))

    @rule(sku=st.sampled_from(SKUS), quantity=st.integers(1, 5))
    def restock(self, sku: str, quantity: int) -> None:
        self.shop.add_stock(sku, quantity)

    @invariant()
    def stock_adds_up(self) -> None:
        self.shop.check_stock()

    @invariant()
    def orders_add_up(self) -> None:
        self.shop.check_orders()

    def teardown(self) -> None:
        if not hasattr(self, "shop"):
            return
        self.shop.drain(self.rnd, duplicates=8)
        self.shop.check_orders()
        self.shop.check_settled()
        # After the rush: paid orders are shipped, cancelled, or both at once (whichever arrives
        # first wins), then shipped ones delivered; every round is drained and checked again.
        for actions in (("keep", "ship", "cancel", "ship+cancel"), ("keep", "deliver")):
            for oid, order in sorted(self.shop.orders.items()):
                action = actions[self.rnd.randrange(len(actions))]
                for step in action.split("+"):
                    if step != "keep" and refusal(order, step) is None:
                        kind = {"ship": ShipRequested, "cancel": CancelRequested,
                                "deliver": DeliverRequested}[step]
                        self.shop.request(kind.new(order_id=oid, correlation_id=oid))
            self.shop.drain(self.rnd, duplicates=4)
            self.shop.check_orders()
            self.shop.check_settled()
        for status in sorted({order.status for order in self.shop.orders.values()}):
            event(f"an order ended {status}")  # --hypothesis-show-statistics shows the spread


class InOrderInventorySaga(SagaMachine):
    """The same, but each sku's inventory commands arrive once and in the order they were sent.

    That is what Kafka's partition order and the agents' replay guard give the inventory agent;
    orders and payments messages still come in any order and any number of times. Green while
    the two inventory bugs below make the full machine fail.
    """

    INVENTORY_IN_ORDER = True


SAGA_SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])

InOrderInventorySaga.TestCase.settings = SAGA_SETTINGS
TestSagaWithInventoryInOrder = InOrderInventorySaga.TestCase

# Remove the xfail (and the phases, which skip shrinking to keep the known failure cheap) once
# the stock rules survive a redelivered or overtaking inventory command.
SagaMachine.TestCase.settings = settings(
    SAGA_SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
TestSaga = pytest.mark.xfail(
    strict=True,
    reason="BUG: a ReserveStock redelivered after its CommitStock holds (or sells) the stock "
    "again, and a ReturnStock overtaking its CommitStock is dropped; see the two examples below",
)(SagaMachine.TestCase)


# -- the same shop, step by step -------------------------------------------------------------


def deliver_all_in_order(shop: Shop) -> None:
    while shop.pending:
        shop.deliver(0)
        shop.check_stock()


def test_a_paid_order_goes_all_the_way_and_adds_up() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 5, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2), ("sku-b", 1)], "pm_card_ok")
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "confirmed"
    shop.request(ShipRequested.new(order_id="o1"))
    shop.request(DeliverRequested.new(order_id="o1"))
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "delivered"
    assert shop.stock["sku-a"].public() == {"sku": "sku-a", "available": 3, "reserved": 0,
                                            "sold": 2}
    shop.check_orders()
    shop.check_settled()


def test_a_short_order_and_a_declined_one_leave_the_stock_as_it_was() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 1, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2), ("sku-b", 2)], "pm_card_ok")
    shop.place("o2", "u-bob", [("sku-a", 1)], "pm_card_declined")
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "rejected"
    assert shop.orders["o2"].status == "payment_failed"
    assert shop.stock["sku-a"].available == 5
    shop.check_settled()


def test_a_cancelled_paid_order_is_refunded_and_its_stock_returned() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    deliver_all_in_order(shop)
    shop.request(CancelRequested.new(order_id="o1", by="u-ann"))
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "cancelled"
    assert shop.payments["o1"].refunded_cents == shop.orders["o1"].total_cents
    assert shop.stock["sku-a"].public()["available"] == 5
    shop.check_settled()


@pytest.mark.xfail(strict=True, reason="BUG: a ReserveStock redelivered after its CommitStock "
                   "holds the stock again, and a paid order never releases it (leaked hold)")
def test_a_reservation_redelivered_after_the_sale_holds_nothing() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "confirmed"
    reserve_a = next(e for e in shop.delivered if isinstance(e.event, ReserveStock))
    shop.redeliver(reserve_a)  # at-least-once: the command comes again, after the sale
    deliver_all_in_order(shop)
    shop.check_settled()  # sku-a holds 2 for the confirmed order o1, for ever


@pytest.mark.xfail(strict=True, reason="BUG: a ReturnStock delivered before the order's "
                   "CommitStock is dropped; the cancelled order's units stay sold")
def test_a_return_overtaking_its_commit_still_puts_the_stock_back() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    while shop.orders.get("o1") is None or shop.orders["o1"].status != "confirmed":
        shop.deliver(0)
    shop.request(CancelRequested.new(order_id="o1"))
    shop.deliver(len(shop.pending) - 1)  # the cancel overtakes the CommitStock
    returned = next(i for i, e in enumerate(shop.pending) if isinstance(e.event, ReturnStock))
    shop.deliver(returned)  # ReturnStock before CommitStock
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "cancelled"
    shop.check_settled()  # sku-a: sold 2, no paid order holds any
