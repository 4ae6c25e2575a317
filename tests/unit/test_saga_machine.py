"""The whole order saga on the agents' own step functions, under at-least-once delivery.

Each agent runs the function its worker runs for an event, through the replay guard, on a
table of its own: the saga ``agents.orders.saga_step`` (on the orders table, whose rows keep
the payment of the payment step it runs in the order's step; the ``SimulatedProvider``
is called in the background, its answers coming back on the payments topic), the inventory
``agents.inventory.change_stock``, the promotions ``agents.promotions.count_promotion``, and
the customers' order index ``update_many`` with ``agents.orders.indexing``. Messages travel
through an in-memory Kafka (``tests/unit/kafka_model.py``): each partition keeps its order,
everything else interleaves;
a producer retry appends a message twice; a crash loses what was not flushed and reads again
from the last commit, with the local store or with only what the changelog holds.

Invariants, after every step: stock never negative and ``initial + restocked = available +
reserved + sold`` per sku, a held quantity per order; each order's bookkeeping agrees with
its status; at most one successful charge per order at the provider; a promotion never
redeemed past its limit. Once everything is delivered: every order settled, each sku sold
exactly what paid orders bought and holds nothing for ended orders, money refunded iff it
was charged and not kept (or its refund given up and dead-lettered), each customer's index
lists their orders once each.

CI runs it with a fixed seed (``derandomize``); ``SHOP_SAGA_EXAMPLES=2000 pytest
tests/unit/test_saga_machine.py`` searches deeper with random seeds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from agents.inventory import change_stock
from agents.orders import NOT_FOR_THE_SAGA, indexing, saga_step
from agents.payments import PAYMENT_STEPS
from agents.promotions import count_promotion
from agents.sending import to_sends
from models.base import Event, EventTypes, decode_event
from models.inventory import INVENTORY_EVENTS, Restock, Stock
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    CancelRequested,
    DeliverRequested,
    ExpireRequested,
    Order,
    OrderIndexed,
    OrderLine,
    OrderPlaced,
    ShipRequested,
    chase,
    refusal,
)
from models.payments import (
    PAYMENT_EVENTS,
    CallFault,
    Charge,
    ProviderCall,
    Refund,
    RetryPolicy,
    answer_of,
    pending_call,
)
from models.promotions import PROMOTION_EVENTS, PromotionSaved
from models.provider import ProviderUnavailable, SimulatedProvider
from tables.payments import payment_of
from tables.replay import Position, Send, update_many
from tests.unit.kafka_model import Agent, Kafka, Message

SKUS = ("sku-a", "sku-b", "sku-c")
PRICES = {"sku-a": 1250, "sku-b": 399, "sku-c": 7000}
USERS = ("u-ann", "u-bob", "u-cy")
#: Methods whose answers need no waiting: declines, faults retried, refunds that fail.
METHODS = ("pm_card_ok", "pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds",
           "pm_card_flaky", "pm_card_refund_flaky", "pm_card_refund_fails")
#: Statuses whose order keeps its money and its stock.
PAID = frozenset({"confirmed", "shipped", "delivered"})
TOPICS = ("orders", "inventory", "payments", "user-orders", "promotions")
#: The one promotion code (orders with a discount use it) and how often it may be redeemed.
CODE = "SAVE"
CODE_LIMIT = 2
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
#: How long the sku's ledger keeps a finished order (SHOP_ORDER_TTL's default).
KEEP = 900
#: Tries of a faulted provider call (more than pm_card_flaky's faults).
POLICY = RetryPolicy(tries=4, base_backoff=0.01)

T = TypeVar("T")


def at_once(call: Coroutine[Any, Any, T]) -> T:
    """Return what a coroutine that never waits returns (the simulated provider, here)."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    call.close()
    raise AssertionError("the provider waited")


def read(types: EventTypes | type[Event], message: Message) -> Event:
    """Decode a message as its agent does."""
    return decode_event(types, message.value)


class Shop:
    """The saga's agents around one Kafka, each with its table, positions and producer."""

    def __init__(self, initial: dict[str, int]) -> None:
        self.kafka = Kafka(TOPICS)
        self.clock = T0
        self.provider = SimulatedProvider(slow_seconds=0)
        self.calls: list[ProviderCall] = []  # made in the background by the payments worker
        self.gave_up: list[str] = []  # payments dead-lettered
        self.initial = dict(initial)
        self.placed: dict[str, OrderPlaced] = {}
        self.saga = Agent("orders.saga", ("orders", "payments"), self.move, self.kafka)
        self.inventory = Agent("inventory.stock", ("inventory",), self.change, self.kafka)
        self.promotions = Agent("promotions.codes", ("promotions",), self.count, self.kafka)
        self.index = Agent("orders.by-user", ("user-orders",), self.list_order, self.kafka)
        self.agents = (self.saga, self.inventory, self.promotions, self.index)
        saved = PromotionSaved.new(
            code=CODE, kind="fixed", value=150, min_order_cents=0,
            starts_at=(T0 - timedelta(days=1)).isoformat(), ends_at=None,
            usage_limit=CODE_LIMIT, per_customer_limit=None, categories=[])
        self.kafka.append("promotions", CODE, saved.dumps().decode())
        for sku, quantity in initial.items():
            if quantity:
                first = Restock.new(sku=sku, quantity=quantity, initial=True)
                self.kafka.append("inventory", sku, first.dumps().decode())
        self.settle_all()  # the shop opens with its stock and its code in the tables

    # -- the agents: what each worker runs for a message -----------------------------------

    def move(self, message: Message, position: Position) -> list[Send]:
        if json.loads(message.value)["type"] in NOT_FOR_THE_SAGA:
            return []
        event = read({**ORDER_EVENTS, **PAYMENT_EVENTS}, message)
        self.clock += timedelta(seconds=1)
        step = saga_step(self.saga.table, event, position, self.clock, POLICY)
        self.calls.extend(step.calls)
        if step.gave_up:
            assert isinstance(event, PAYMENT_STEPS)
            self.gave_up.append(event.order_id)
        return step.sends

    def change(self, message: Message, position: Position) -> list[Send]:
        return change_stock(self.inventory.table, read(INVENTORY_EVENTS, message), position,
                            keep=KEEP)

    def count(self, message: Message, position: Position) -> list[Send]:
        return count_promotion(self.promotions.table, read(PROMOTION_EVENTS, message),
                               position)

    def list_order(self, message: Message, position: Position) -> list[Send]:
        indexed = read(OrderIndexed, message)
        assert isinstance(indexed, OrderIndexed)
        errors = update_many(self.index.table, indexed.user_id,
                             [(position, indexing(indexed))])
        assert not errors, errors
        return []

    def route(self, send: Send) -> None:
        """A flushed message reaches its topic (stock levels and RabbitMQ are not modelled)."""
        topic, key, value = send
        if topic in TOPICS:
            self.kafka.append(topic, key, value)

    # -- the background: the provider's calls, the chase, the API ---------------------------

    def answer(self, index: int) -> None:
        """The provider answers a call; what came of it goes to the payments topic."""
        call = self.calls.pop(index)
        answer: Charge | Refund | CallFault
        try:
            if call.call == "charge":
                answer = at_once(self.provider.charge(call.order_id, call.amount_cents,
                                                      call.payment_method,
                                                      order_id=call.order_id))
            else:
                answer = at_once(self.provider.refund(f"refund:{call.order_id}",
                                                      call.charge_id, call.amount_cents,
                                                      order_id=call.order_id))
        except ProviderUnavailable as exc:
            answer = CallFault("error", str(exc))
        self.saga.produce([("payments", call.order_id,
                            answer_of(call, answer).dumps().decode())])

    def crash(self, agent: Agent, *, taken_over: bool) -> None:
        """The worker dies; its partitions are read again from their last commit."""
        agent.crash(taken_over=taken_over)
        if agent is self.saga:
            # The calls under way died with it; after the rebalance, the pending rows are
            # called again (agents.payments.call_again_after_rebalance).
            self.calls = [c for row in self.saga.table.values()
                          if (p := payment_of(row)) and (c := pending_call(p))]

    def chase(self, order_id: str) -> None:
        """The saga's timer asks again for an order that waits too long."""
        row = self.saga.table[order_id]
        self.saga.produce(to_sends(chase(Order.from_row(row))))

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
        self.request(placed)

    def request(self, event: Event) -> None:
        """A view sends to the orders topic and waits for the broker's ack."""
        self.kafka.append("orders", event.order_id, event.dumps().decode())

    def add_stock(self, sku: str, quantity: int) -> None:
        self.kafka.append("inventory", sku, Restock.new(sku=sku, quantity=quantity).dumps()
                          .decode())

    def settle_all(self, rnd: Any = None) -> None:
        """Deliver, answer, flush and commit until nothing moves; chase what still waits."""
        for _ in range(200):
            moved = False
            for agent in self.agents:
                while ready := agent.ready():
                    agent.deliver(ready[rnd.randrange(len(ready))] if rnd else ready[0])
                    moved = True
                agent.commit(self.route)
            while self.calls:
                self.answer(rnd.randrange(len(self.calls)) if rnd else 0)
                moved = True
            if not moved and not any(a.ready() or a.buffer for a in self.agents):
                waiting = [oid for oid, row in self.saga.table.items()
                           if row["status"] in ACTIVE]
                if not waiting:
                    return
                for order_id in waiting:
                    self.chase(order_id)
        raise AssertionError("the saga does not come to rest")

    # -- what the tables say ---------------------------------------------------------------

    @property
    def stock(self) -> dict[str, Stock]:
        return {sku: Stock.from_row(sku, self.inventory.table.get(sku)) for sku in SKUS}

    @property
    def orders(self) -> dict[str, Order]:
        return {oid: Order.from_row(row) for oid, row in self.saga.table.items()}

    def charges(self, order_id: str) -> list[dict[str, Any]]:
        """Return the provider's successful charges of an order."""
        return [c for c in self.provider.ledger(order_id)["charges"]
                if c["status"] == "succeeded"]

    def refunds(self, order_id: str) -> list[dict[str, Any]]:
        return [r for r in self.provider.ledger(order_id)["refunds"]
                if r["status"] == "succeeded"]

    # -- what must hold ---------------------------------------------------------------------

    def check_stock(self) -> None:
        """Stock counts never negative, nothing appears or vanishes, holds add up."""
        for sku, stock in self.stock.items():
            counts = (stock.available, stock.reserved, stock.sold)
            assert min(counts) >= 0, f"{sku} went negative: {stock}"
            assert stock.initial in (0, self.initial[sku]), stock
            assert stock.initial + stock.restocked == sum(counts), f"{sku}: {stock}"
            assert stock.reserved == sum(stock.holds.values()), f"{sku}: {stock}"
            assert all(q > 0 for q in stock.holds.values()), f"{sku}: {stock}"

    def check_orders(self) -> None:
        """Each order's bookkeeping agrees with its status; money and codes within limits."""
        for oid, order in self.orders.items():
            assert order.history[-1][0] == order.status, order
            assert order.reserved <= set(order.skus), order
            if order.status not in ACTIVE:
                assert not order.reserved, order
            if order.status in PAID:
                assert order.charged_cents == order.total_cents, order
                if order.promotion_code:
                    assert order.promotion_state == "redeemed", order
            assert len(self.charges(oid)) <= 1, f"{oid} charged twice"
            assert len(self.refunds(oid)) <= 1, f"{oid} refunded twice"
        row = self.promotions.table.get(CODE)
        assert row is not None
        assert row["used"] == len(row["orders"]) <= CODE_LIMIT, row

    def check_settled(self) -> None:
        """Once everything is delivered: orders ended, stock and money add up, indexes whole."""
        orders = self.orders
        assert set(orders) == set(self.placed), "an order was placed but never processed"
        for oid, order in orders.items():
            assert order.status not in ACTIVE, f"{oid} is still {order.status}"
        for sku, stock in self.stock.items():
            assert not stock.holds, f"{sku} still holds stock for ended orders: {stock}"
            bought = sum(qty for o in orders.values() if o.status in PAID
                         for s, qty, _ in o.items if s == sku)
            assert stock.sold == bought, f"{sku}: sold {stock.sold}, paid orders hold {bought}"
        for user in USERS:
            index = (self.index.table.get(user) or {"orders": []})["orders"]
            mine = sorted((o.history[0][1], oid, o.total_cents) for oid, o in orders.items()
                          if o.user_id == user)
            assert sorted((e["placed_at"], e["id"], e["total_cents"]) for e in index) == mine
        code = self.promotions.table[CODE]
        holding = {oid for oid, o in orders.items() if o.status in PAID and o.promotion_code}
        assert set(code["orders"]) == holding, (sorted(code["orders"]), sorted(holding))
        for oid, order in orders.items():
            charged, refunded = bool(self.charges(oid)), bool(self.refunds(oid))
            payment = payment_of(self.saga.table.get(oid))
            if order.status in PAID:
                assert (charged, refunded) == (True, False), (order, payment)
            elif charged and not refunded:
                assert payment is not None and payment["status"] == "refund_failed", payment
                assert oid in self.gave_up, f"{oid}'s failed refund was not dead-lettered"
            else:
                assert refunded == charged, (order, payment)
            assert order.charged_cents == (order.total_cents if charged else 0), order
            assert order.refunded_cents == (order.total_cents if refunded else 0), order


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
AGENTS = ("orders.saga", "inventory.stock", "promotions.codes", "orders.by-user")
#: The agents a step picks from: the saga's two hops more often than the others.
PICKED = st.sampled_from(AGENTS[:2] * 3 + AGENTS[2:])


class SagaMachine(RuleBasedStateMachine):
    """Orders, answers, crashes and duplicates in any interleaving; the saga must stay whole."""

    shop: Shop

    @initialize(initial=st.fixed_dictionaries({sku: st.integers(0, 10) for sku in SKUS}),
                first=st.lists(order_strategy, min_size=1, max_size=3))
    def open_shop(self, initial: dict[str, int], first: list[NewOrder]) -> None:
        """Stock the shop scarcely and take the first orders (every example has some)."""
        self.shop = Shop(initial)
        self.count = 0
        for new in first:
            self.place_order(*new)

    def agent(self, name: str) -> Agent:
        return next(a for a in self.shop.agents if a.name == name)

    @rule(new=order_strategy)
    def place_a_new_order(self, new: NewOrder) -> None:
        self.place_order(*new)

    def place_order(self, user: str, lines: list[tuple[str, int]], method: str,
                    discount: int) -> None:
        self.count += 1
        self.shop.place(f"o{self.count}", user, lines, method, discount)

    @rule(data=st.data(), name=PICKED, count=st.integers(1, 8),
          then=st.sampled_from(("flush", "commit", "crash", "crash, taken over", "")))
    def deliver(self, data: st.DataObject, name: str, count: int, then: str) -> None:
        """An agent reads up to ``count`` messages, each from any of its partitions; then
        its producer flushes, it commits, its worker dies, or nothing."""
        agent = self.agent(name)
        for _ in range(count):
            ready = agent.ready()
            if not ready:
                break
            agent.deliver(data.draw(st.sampled_from(ready), label="partition"))
        if then == "flush":
            agent.flush(self.shop.route)
        elif then == "commit":
            agent.commit(self.shop.route)
        elif then:
            if any(agent.position.get(tp, 0) > agent.committed.get(tp, 0)
                   for tp in agent.position):
                event("a crash hit uncommitted work")
            self.shop.crash(agent, taken_over=then.endswith("taken over"))

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """A producer retry: one of a partition's last messages is appended again."""
        logs = [log for log in self.shop.kafka.logs.values() if log]
        log = data.draw(st.sampled_from(logs), label="partition")
        self.shop.kafka.append_again(data.draw(st.sampled_from(log[-3:]), label="message"))

    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """The provider answers one of the calls under way."""
        if self.shop.calls:
            self.shop.answer(data.draw(st.integers(0, len(self.shop.calls) - 1), label="call"))

    @rule(data=st.data())
    def chase(self, data: st.DataObject) -> None:
        if self.waiting():
            self.shop.chase(data.draw(st.sampled_from(self.waiting()), label="order"))

    def waiting(self) -> list[str]:
        return sorted(oid for oid, row in self.shop.saga.table.items()
                      if row["status"] in ACTIVE)

    def requests(self) -> list[tuple[str, str]]:
        """Return what the API, the scheduler and the admin may ask now: (order id, action)."""
        asks = []
        for oid, order in sorted(self.shop.orders.items()):
            asks += [(oid, action) for action in ("cancel", "ship", "deliver")
                     if refusal(order, action) is None]
            if order.status in ACTIVE:
                asks.append((oid, "expire"))
        return asks

    @rule(data=st.data(), by=st.sampled_from(("", "admin")))
    def request(self, data: st.DataObject, by: str) -> None:
        """Cancel, ship or deliver as the API allows it now, or expire a waiting order."""
        if not self.requests():
            return
        oid, action = data.draw(st.sampled_from(self.requests()), label="request")
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
        self.shop.settle_all()
        self.shop.check_orders()
        self.shop.check_settled()
        # After the rush: paid orders are shipped or cancelled, shipped ones delivered.
        for action in ("cancel", "ship", "deliver"):
            for oid, order in sorted(self.shop.orders.items()):
                if refusal(order, action) is None and int(oid[1:]) % 2:
                    kind = {"ship": ShipRequested, "cancel": CancelRequested,
                            "deliver": DeliverRequested}[action]
                    self.shop.request(kind.new(order_id=oid, correlation_id=oid))
            self.shop.settle_all()
            self.shop.check_orders()
            self.shop.check_settled()
        for status in sorted({order.status for order in self.shop.orders.values()}):
            event(f"an order ended {status}")  # --hypothesis-show-statistics shows the spread


#: Examples a run; SHOP_SAGA_EXAMPLES searches deeper, with random seeds.
EXAMPLES = int(os.environ.get("SHOP_SAGA_EXAMPLES", "0"))
SagaMachine.TestCase.settings = settings(
    max_examples=EXAMPLES or 100, stateful_step_count=50, deadline=None,
    derandomize=not EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
TestSaga = SagaMachine.TestCase


# -- the same shop, step by step -------------------------------------------------------------


def test_a_paid_order_goes_all_the_way_and_adds_up() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 5, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2), ("sku-b", 1)], "pm_card_ok")
    shop.settle_all()
    assert shop.orders["o1"].status == "confirmed"
    shop.request(ShipRequested.new(order_id="o1"))
    shop.settle_all()
    shop.request(DeliverRequested.new(order_id="o1"))
    shop.settle_all()
    assert shop.orders["o1"].status == "delivered"
    assert shop.stock["sku-a"].public() == {"sku": "sku-a", "available": 3, "reserved": 0,
                                            "sold": 2}
    shop.check_orders()
    shop.check_settled()


def test_a_crash_that_loses_the_changelog_and_the_sends_replays_into_the_same_state() -> None:
    """The saga's worker dies after handling the order; the next owner has only the
    changelog and reads the order's events again: the order still ends once, paid once."""
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    while ready := shop.saga.ready():
        shop.saga.deliver(ready[0])
    assert shop.saga.table["o1"]["status"] == "placed" and shop.saga.buffer
    shop.crash(shop.saga, taken_over=True)
    assert shop.saga.table == {} and not shop.saga.buffer
    shop.settle_all()
    assert shop.orders["o1"].status == "confirmed"
    assert len(shop.charges("o1")) == 1
    shop.check_settled()


def test_a_reservation_appended_again_after_the_sale_holds_nothing() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 2)], "pm_card_ok")
    shop.settle_all()
    reserve = next(m for log in shop.kafka.logs.values() for m in log
                   if json.loads(m.value)["type"] == "reserve_stock")
    for _ in range(20):  # the ids ring forgets it
        shop.add_stock("sku-a", 1)
    shop.kafka.append_again(reserve)
    shop.settle_all()
    shop.check_settled()
    assert shop.stock["sku-a"].public() == {"sku": "sku-a", "available": 23, "reserved": 0,
                                            "sold": 2}


def test_a_refund_that_keeps_failing_is_given_up_and_dead_lettered() -> None:
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 1)], "pm_card_refund_fails")
    shop.settle_all()
    shop.request(CancelRequested.new(order_id="o1"))
    shop.settle_all()
    assert shop.orders["o1"].status == "cancelled"
    assert (payment_of(shop.saga.table["o1"]) or {}).get("status") == "refund_failed"
    assert shop.gave_up == ["o1"]
    shop.check_settled()


def test_a_crash_reads_uncommitted_work_again_and_the_guard_sends_what_it_kept() -> None:
    """The saga's position runs ahead of its commit: after a crash the order is read again,
    its row (kept in the local store) is left alone, and the messages it caused go again."""
    shop = Shop({"sku-a": 5, "sku-b": 0, "sku-c": 0})
    shop.place("o1", "u-ann", [("sku-a", 1)], "pm_card_ok")
    [partition] = shop.saga.ready()
    shop.saga.deliver(partition)
    row, first_sends = shop.saga.table["o1"], list(shop.saga.buffer)
    shop.crash(shop.saga, taken_over=False)
    assert shop.saga.ready() == [partition] and shop.saga.buffer == []
    shop.saga.deliver(partition)
    assert shop.saga.table["o1"] == row
    assert shop.saga.buffer == first_sends
    shop.settle_all()
    shop.check_settled()
