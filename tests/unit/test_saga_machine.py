"""The whole order saga in memory, driven by hypothesis under random interleavings.

``Shop`` plays the services the way their agents do, with the same pure rules and rows: the
orders agent applies ``models.orders.decide`` to the order's row, the inventory agent applies
``models.inventory.apply_inventory_event`` to a sku's stock row (answering reservations on the
orders topic, stock levels on the catalog topic), and the payments agent asks the
``SimulatedProvider`` only when ``needs_provider`` says so and keeps ``decide_payment``'s row.
The agents' replay guard is left out on purpose: every redelivery reaches the rules.

Every message goes through one in-memory bus of pending effects; the state machine delivers
any pending message (not first-in first-out), delivers messages again (at-least-once), places
orders, and plays the API's cancel, ship and deliver, the scheduler's expiry and the admin's
restock. The invariants of DESIGN.md's "Order saga" are checked after every step, and, once
the bus is drained, that every order settled, that stock and money add up, and that each
customer's order index lists their orders once each.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from models.base import Effect, Event, EventTypes, decode_event
from models.catalog import ProductSaved, apply_catalog_event, stock_level
from models.inventory import (
    INVENTORY_EVENTS,
    ReserveStock,
    Restock,
    ReturnStock,
    Stock,
    apply_inventory_event,
)
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    SETTLED,
    CancelRequested,
    DeliverRequested,
    ExpireRequested,
    Order,
    OrderIndexed,
    OrderLine,
    OrderPlaced,
    ShipRequested,
    decide,
    index_order,
    refusal,
)
from models.payments import (
    PAYMENT_EVENTS,
    Charge,
    PaymentRequested,
    Refund,
    RefundRequested,
    SimulatedProvider,
    decide_payment,
    needs_provider,
)
from models.promotions import (
    PROMOTION_EVENTS,
    PromotionSaved,
    RedeemPromotion,
    ReturnRedemption,
    apply_redeem,
    apply_return,
    apply_saved,
)

SKUS = ("sku-a", "sku-b", "sku-c")
PRICES = {"sku-a": 1250, "sku-b": 399, "sku-c": 7000}
USERS = ("u-ann", "u-bob", "u-cy")
#: pm_card_ok twice: most orders should get as far as a charge. (pm_card_slow would sleep.)
METHODS = ("pm_card_ok", "pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds")
#: Statuses whose order keeps its money and its stock.
PAID = frozenset({"confirmed", "shipped", "delivered"})
TOPICS = ("orders", "inventory", "payments", "catalog", "user-orders", "promotions")
#: The one promotion code (orders with a discount use it) and how often it may be redeemed.
CODE = "SAVE"
CODE_LIMIT = 2
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
#: The field each topic is keyed by (the others: order_id).
KEYED_BY = {"inventory": "sku", "catalog": "sku", "user-orders": "user_id",
            "promotions": "code"}
#: The events each topic's consumers decode (the orders agent reads orders and payments).
WIRE: dict[str, EventTypes | type[Event]] = {
    "orders": ORDER_EVENTS, "inventory": INVENTORY_EVENTS, "payments": PAYMENT_EVENTS,
    "user-orders": OrderIndexed, "promotions": PROMOTION_EVENTS,
}

T = TypeVar("T")


def at_once(call: Coroutine[Any, Any, T]) -> T:
    """Return what a coroutine that never waits returns (the provider, but for pm_card_slow)."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    call.close()
    raise AssertionError("the provider waited")


class Shop:
    """The orders, inventory, payments and catalog services in memory, around one bus."""

    def __init__(self, initial: Mapping[str, int], *, inventory_in_order: bool = False) -> None:
        #: Deliver each sku's inventory commands once and in the order they were sent (as
        #: Kafka's partition order and the agents' replay guard do), not in any order.
        self.inventory_in_order = inventory_in_order
        self.provider = SimulatedProvider(slow_seconds=0)
        self.initial = dict(initial)
        self.restocked = dict.fromkeys(initial, 0)
        self.stock_rows: dict[str, dict[str, Any]] = {}
        self.catalog: dict[str, dict[str, Any]] = {}
        self.order_rows: dict[str, dict[str, Any]] = {}
        self.payment_rows: dict[str, dict[str, Any]] = {}
        self.user_index: dict[str, dict[str, Any]] = {}
        self.placed: dict[str, OrderPlaced] = {}
        self.charges: Counter[str] = Counter()  # provider charges per order
        self.refunds: Counter[str] = Counter()  # provider refunds per order
        self.pending: list[Effect] = []
        self.delivered: list[Effect] = []
        self.clock = T0
        self.promotion_row: dict[str, Any] | None = apply_saved(None, PromotionSaved.new(
            code=CODE, kind="fixed", value=150, min_order_cents=0,
            starts_at=(T0 - timedelta(days=1)).isoformat(), ends_at=None,
            usage_limit=CODE_LIMIT, per_customer_limit=None, categories=[]))
        for sku in initial:
            self.catalog[sku] = apply_catalog_event(None, ProductSaved.new(
                sku=sku, name=f"Product {sku}", category="mugs", price_cents=PRICES[sku]))
            self.stock_rows[sku] = Stock(sku).to_row()
            if initial[sku]:
                first = Restock.new(sku=sku, quantity=initial[sku], initial=True)
                self.publish(apply_inventory_event(Stock(sku), first)[1])  # its stock level
                self.stock_rows[sku] = apply_inventory_event(Stock(sku), first)[0].to_row()

    @property
    def stock(self) -> dict[str, Stock]:
        return {sku: Stock.from_row(sku, row) for sku, row in self.stock_rows.items()}

    @property
    def orders(self) -> dict[str, Order]:
        return {oid: Order.from_row(row) for oid, row in self.order_rows.items()}

    # -- the bus -----------------------------------------------------------------------------

    def publish(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            event = effect.event
            assert effect.topic in TOPICS, effect
            field = KEYED_BY.get(effect.topic, "order_id")
            expected_key = getattr(event, field)
            assert effect.key == expected_key, f"{effect.topic} keyed {effect.key!r}: {event!r}"
            if effect.topic == "catalog":
                # One partition, one writer per sku: the catalog sees a sku's levels in order.
                self.catalog[effect.key] = apply_catalog_event(self.catalog[effect.key], event)
            else:
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
        # Through the wire, as the agents read it: JSON, decoded and checked by topic.
        event: Event = decode_event(WIRE[effect.topic], effect.event.dumps())
        assert event.asdict() == effect.event.asdict(), effect
        if effect.topic == "inventory":
            self.publish(self.inventory(event))
        elif isinstance(event, PaymentRequested | RefundRequested):
            self.publish(self.payment(event))
        elif effect.topic == "promotions":
            self.publish(self.promotion(event))
        elif isinstance(event, OrderIndexed):  # the per-customer index of orders
            self.user_index[effect.key] = index_order(self.user_index.get(effect.key), event)
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
                                 promotion_code=CODE if discount else None,
                                 correlation_id=order_id)
        self.placed[order_id] = placed
        self.publish([Effect("orders", order_id, placed)])

    def request(self, event: Event) -> None:
        self.publish([Effect("orders", event.order_id, event)])

    def add_stock(self, sku: str, quantity: int) -> None:
        self.publish([Effect("inventory", sku, Restock.new(sku=sku, quantity=quantity))])

    # -- the services, as their agents run them --------------------------------------------------

    def order(self, event: Event) -> list[Effect]:
        """The orders agent: the saga's decision on the order's row."""
        row = self.order_rows.get(event.order_id)
        decision = decide(Order.from_row(row) if row else None, event, self.clock)
        if decision.order is None:
            assert row is None, f"{event.type} lost order {event.order_id}"
        else:
            assert decision.order.id == event.order_id
            self.order_rows[event.order_id] = decision.order.to_row()
        return decision.effects

    def inventory(self, event: Event) -> list[Effect]:
        """The inventory agent: the stock rules on the sku's row."""
        assert event.type in ("reserve_stock", "release_stock", "commit_stock", "return_stock",
                              "restock"), f"{event.type} sent to the inventory topic"
        sku = event.sku
        after, effects = apply_inventory_event(Stock.from_row(sku, self.stock_rows[sku]), event)
        self.stock_rows[sku] = after.to_row()
        if isinstance(event, Restock) and not event.initial:
            self.restocked[sku] += event.quantity
        return effects

    def promotion(self, event: Event) -> list[Effect]:
        """The promotions agent: the single writer of the code's row (redeem and give back)."""
        assert isinstance(event, RedeemPromotion | ReturnRedemption), event
        if isinstance(event, RedeemPromotion):
            redemption = apply_redeem(self.promotion_row, event)
        else:
            redemption = apply_return(self.promotion_row, event)
        self.promotion_row = redemption.row
        answer = redemption.answer
        return [Effect("orders", event.order_id, answer)] if answer else []

    def payment(self, event: PaymentRequested | RefundRequested) -> list[Effect]:
        """The payments agent: the provider asked at most once each way, one row per order."""
        oid = event.order_id
        row = self.payment_rows.get(oid)
        answer: Charge | Refund | None = None
        if needs_provider(row, event):
            if isinstance(event, PaymentRequested):
                self.charges[oid] += 1
                answer = at_once(self.provider.charge(oid, event.amount_cents,
                                                      event.payment_method))
            else:
                assert row is not None
                self.refunds[oid] += 1
                answer = at_once(self.provider.refund(f"refund:{oid}", row["charge_id"],
                                                      row["amount_cents"]))
        new_row, effects = decide_payment(row, event, answer)
        if new_row is not None:
            self.payment_rows[oid] = new_row
        return effects

    def money(self, order_id: str) -> tuple[int, int]:
        """Return (charged, refunded) cents of an order, as its payment row says."""
        row = self.payment_rows.get(order_id)
        if row is None or row["status"] == "failed":
            return 0, 0
        return row["amount_cents"], row["refunded_cents"]

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
            level = self.catalog[sku]["stock_level"]
            assert level == stock_level(stock.available), f"listing says {level}: {stock}"

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
            if order.status in PAID and order.promotion_code:
                assert order.promotion_state == "redeemed", order
            assert self.refunds[oid] <= 1, f"{oid} refunded {self.refunds[oid]} times"
        row = self.promotion_row
        assert row is not None
        assert row["used"] == len(row["orders"]) <= CODE_LIMIT, row

    def check_settled(self) -> None:
        """Checked once the bus is drained: orders ended, stock and money add up, indexes whole."""
        assert not self.pending
        orders = self.orders
        assert set(orders) == set(self.placed), "an order was placed but never processed"
        for oid, order in orders.items():
            assert order.status in SETTLED, f"{oid} is still {order.status}"
        live = {oid for oid, o in orders.items() if o.status in ACTIVE}
        for sku, stock in self.stock.items():
            leaked = set(stock.holds) - live
            assert not leaked, f"{sku} still holds stock for ended orders {leaked}: {stock}"
            bought = sum(qty for o in orders.values() if o.status in PAID
                         for s, qty, _ in o.items if s == sku)
            assert stock.sold == bought, f"{sku}: sold {stock.sold}, paid orders hold {bought}"
        for user in USERS:
            index = self.user_index.get(user, {"orders": []})["orders"]
            mine = sorted((o.history[0][1], oid, o.total_cents) for oid, o in orders.items()
                          if o.user_id == user)
            assert [(e["placed_at"], e["id"], e["total_cents"]) for e in index] == mine, user
        assert self.promotion_row is not None
        holding = {oid for oid, o in orders.items() if o.status in PAID and o.promotion_code}
        assert set(self.promotion_row["orders"]) == holding, (
            f"the code is held by {sorted(self.promotion_row['orders'])}, "
            f"paid orders with it are {sorted(holding)}")
        kept = sum(charged - refunded for charged, refunded in map(self.money, orders))
        paid = sum(o.total_cents for o in orders.values() if o.status in PAID)
        assert kept == paid, f"kept {kept} cents, paid orders are worth {paid}"
        for oid, order in orders.items():
            charged, refunded = self.money(oid)
            row = self.payment_rows.get(oid)
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
                rnd=st.randoms(use_true_random=True))
    def open_shop(self, initial: dict[str, int], first: list[NewOrder],
                  rnd: random.Random) -> None:
        """Stock the shop scarcely and take the first orders (every example has some)."""
        self.shop = Shop(initial, inventory_in_order=self.INVENTORY_IN_ORDER)
        self.rnd = rnd
        self.count = 0
        for new in first:
            self.place_order(*new)

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


SAGA_SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])

# Any inventory command redelivered or overtaken: the stock's per-order ledger keeps each
# order's units held, sold, released and returned at most once each.
SagaMachine.TestCase.settings = SAGA_SETTINGS
TestSaga = SagaMachine.TestCase


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
    deliver_all_in_order(shop)
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
    assert shop.money("o1") == (shop.orders["o1"].total_cents,) * 2
    assert shop.stock["sku-a"].public()["available"] == 5
    shop.check_settled()


def test_a_reservation_redelivered_after_the_sale_holds_nothing() -> None:
    """The sku answers "reserved" again from its ledger and holds nothing anew."""
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    deliver_all_in_order(shop)
    assert shop.orders["o1"].status == "confirmed"
    reserve_a = next(e for e in shop.delivered if isinstance(e.event, ReserveStock))
    shop.redeliver(reserve_a)  # at-least-once: the command comes again, after the sale
    deliver_all_in_order(shop)
    shop.check_settled()
    assert shop.stock["sku-a"].public() == {"sku": "sku-a", "available": 3, "reserved": 0,
                                            "sold": 2}


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
