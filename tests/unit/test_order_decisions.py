"""models/orders.py: the saga's decisions, one event at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import models.orders as orders_module
from models.base import Effect, Event, decode_event
from models.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    ReturnStock,
    StockRejected,
    StockReserved,
)
from models.orders import (
    ACTIVE,
    ORDER_EVENTS,
    SETTLED,
    CancelRequested,
    Decision,
    DeliverRequested,
    ExpireRequested,
    Order,
    OrderIndexed,
    OrderLine,
    OrderPlaced,
    OrderUpdate,
    ShipRequested,
    chase,
    decide,
    index_order,
    refusal,
)
from models.payments import (
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
    Refunded,
    RefundRequested,
)
from models.promotions import PromotionRedeemed, PromotionRefused, RedeemPromotion

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OID = "o-1"
LINES = (("sku-a", 2, 1000), ("sku-b", 1, 500))  # subtotal 2500
STATUSES = ("placed", "reserved", "confirmed", "shipped", "delivered", "rejected",
            "payment_failed", "cancelled", "expired")


def placed_event(lines: tuple[tuple[str, int, int], ...] = LINES, *, discount: int = 300,
                 method: str = "pm_card_ok", order_id: str = OID) -> OrderPlaced:
    subtotal = sum(qty * price for _, qty, price in lines)
    return OrderPlaced.new(
        order_id=order_id, user_id="u-ann",
        items=[OrderLine(sku=s, quantity=q, unit_price_cents=p) for s, q, p in lines],
        subtotal_cents=subtotal, discount_cents=discount, total_cents=subtotal - discount,
        payment_method=method, promotion_code="SPRING" if discount else None,
        correlation_id=order_id)


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def reserved_answer(sku: str, quantity: int = 1) -> StockReserved:
    return StockReserved.new(order_id=OID, sku=sku, quantity=quantity)


def rejected_answer(sku: str, requested: int = 3, available: int = 1) -> StockRejected:
    return StockRejected.new(order_id=OID, sku=sku, requested=requested, available=available)


def charged(amount: int = 2200) -> PaymentSucceeded:
    return PaymentSucceeded.new(order_id=OID, amount_cents=amount, charge_id="ch_1")


def declined() -> PaymentFailed:
    return PaymentFailed.new(order_id=OID, reason="card_declined")


def refunded(amount: int = 2200) -> Refunded:
    return Refunded.new(order_id=OID, amount_cents=amount, refund_id="re_1")


def cancel(by: str = "") -> CancelRequested:
    return CancelRequested.new(order_id=OID, by=by)


def play(*events: Event, order: Order | None = None) -> Decision:
    """Apply ``events`` in turn (a minute apart); return the last decision."""
    decision = Decision(order)
    for minute, event in enumerate(events):
        decision = decide(decision.order, event, at(minute))
    return decision


def redeemed_answer() -> PromotionRedeemed:
    return PromotionRedeemed.new(code="SPRING", order_id=OID)


def placed() -> Order:
    """An order placed with the code SPRING, whose redemption the promotions agent counted."""
    order = play(placed_event(), redeemed_answer()).order
    assert order is not None and order.promotion_state == "redeemed"
    return order


def reserved() -> Order:
    order = play(reserved_answer("sku-a"), reserved_answer("sku-b"), order=placed()).order
    assert order is not None and order.status == "reserved"
    return order


def confirmed() -> Order:
    order = play(charged(), order=reserved()).order
    assert order is not None and order.status == "confirmed"
    return order


def shipped() -> Order:
    order = play(ShipRequested.new(order_id=OID), order=confirmed()).order
    assert order is not None
    return order


def delivered() -> Order:
    order = play(DeliverRequested.new(order_id=OID), order=shipped()).order
    assert order is not None
    return order


def ended(status: str) -> Callable[[], Order]:
    """Return a builder of an order that ended ``status`` before it was paid."""
    end: dict[str, tuple[Callable[[], Order], Callable[[], Event]]] = {
        "rejected": (placed, lambda: rejected_answer("sku-a")),
        "payment_failed": (reserved, declined),
        "cancelled": (reserved, cancel),
        "expired": (placed, lambda: ExpireRequested.new(order_id=OID)),
    }

    def build() -> Order:
        before, event = end[status]
        order = play(event(), order=before()).order
        assert order is not None and order.status == status
        return order

    return build


BUILDERS: dict[str, Callable[[], Order]] = {
    "placed": placed, "reserved": reserved, "confirmed": confirmed, "shipped": shipped,
    "delivered": delivered,
    **{status: ended(status) for status in ("rejected", "payment_failed", "cancelled",
                                            "expired")},
}


def kinds(effects: list[Effect]) -> list[tuple[str, str, str]]:
    """The effects as (topic, key, event type)."""
    return [(e.topic, e.key, e.event.type) for e in effects]


def notice(decision: Decision) -> OrderUpdate:
    last = decision.effects[-1]
    assert isinstance(last.event, OrderUpdate)
    assert last.topic == "orders" and last.key == OID
    return last.event


# -- the happy path ------------------------------------------------------------------------


def test_a_placed_order_asks_the_inventory_to_hold_each_sku() -> None:
    decision = decide(None, placed_event(), NOW)
    order = decision.order
    assert order is not None
    assert (order.id, order.user_id, order.status) == (OID, "u-ann", "placed")
    assert order.items == LINES
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (2500, 300, 2200)
    assert (order.payment_method, order.promotion_code) == ("pm_card_ok", "SPRING")
    assert order.history == (("placed", NOW.isoformat()),)
    assert (order.reserved, order.charged_cents, order.refunded_cents) == (frozenset(), 0, 0)
    assert kinds(decision.effects) == [("inventory", "sku-a", "reserve_stock"),
                                       ("inventory", "sku-b", "reserve_stock"),
                                       ("promotions", "SPRING", "redeem_promotion"),
                                       ("user-orders", "u-ann", "order_indexed")]
    for effect, (sku, qty, _) in zip(decision.effects, LINES, strict=False):
        assert isinstance(effect.event, ReserveStock)
        assert (effect.event.sku, effect.event.order_id, effect.event.quantity) == (sku, OID, qty)
        assert effect.event.correlation_id == OID
    indexed = decision.effects[-1].event
    assert isinstance(indexed, OrderIndexed)
    assert (indexed.user_id, indexed.order_id, indexed.placed_at, indexed.total_cents) == (
        "u-ann", OID, NOW.isoformat(), 2200)


def test_the_last_reservation_asks_for_the_charge() -> None:
    first = decide(placed(), reserved_answer("sku-b"), at(1))
    assert first.order is not None
    assert (first.order.status, first.order.reserved) == ("placed", {"sku-b"})
    assert first.effects == []
    last = decide(first.order, reserved_answer("sku-a", 2), at(2))
    assert last.order is not None and last.order.status == "reserved"
    assert last.order.reserved == {"sku-a", "sku-b"}
    assert last.order.history[-1] == ("reserved", at(2).isoformat())
    assert kinds(last.effects) == [("payments", OID, "payment_requested")]
    request = last.effects[0].event
    assert isinstance(request, PaymentRequested)
    assert (request.amount_cents, request.payment_method) == (2200, "pm_card_ok")


def test_the_charge_confirms_the_order_and_sells_its_stock() -> None:
    decision = decide(reserved(), charged(), at(5))
    order = decision.order
    assert order is not None
    assert (order.status, order.charged_cents, order.reserved) == ("confirmed", 2200, frozenset())
    assert kinds(decision.effects) == [("inventory", "sku-a", "commit_stock"),
                                       ("inventory", "sku-b", "commit_stock"),
                                       ("orders", OID, "order_confirmed")]
    assert all(isinstance(e.event, CommitStock) and e.event.order_id == OID
               for e in decision.effects[:2])
    update = notice(decision)
    assert (update.status, update.user_id, update.total_cents) == ("confirmed", "u-ann", 2200)
    assert update.occurred_at == at(5)


def test_a_change_decided_again_announces_itself_with_the_same_notice_id() -> None:
    # A crash can lose the row of a confirmation whose notice was sent: the charge is decided
    # again, and its notice must carry the id the notice readers already know.
    first, again = decide(reserved(), charged(), at(5)), decide(reserved(), charged(), at(6))
    assert notice(first).event_id == notice(again).event_id
    assert first.order is not None
    shipped = decide(first.order, ShipRequested.new(order_id=OID), at(7))
    assert notice(shipped).event_id != notice(first).event_id


def test_an_order_is_shipped_then_delivered_with_its_whole_history() -> None:
    ship = decide(confirmed(), ShipRequested.new(order_id=OID), at(10))
    assert ship.order is not None and ship.order.status == "shipped"
    assert kinds(ship.effects) == [("orders", OID, "order_shipped")]
    done = decide(ship.order, DeliverRequested.new(order_id=OID), at(11))
    assert done.order is not None and done.order.status == "delivered"
    assert kinds(done.effects) == [("orders", OID, "order_delivered")]
    assert [s for s, _ in done.order.history] == ["placed", "reserved", "confirmed", "shipped",
                                                  "delivered"]


# -- shortage and refusal of payment --------------------------------------------------------


def test_a_shortage_rejects_the_order_and_releases_every_sku() -> None:
    """Every sku, not only those known held: an answer may still be on its way, or lost."""
    held = decide(placed(), reserved_answer("sku-a", 2), at(1)).order
    decision = decide(held, rejected_answer("sku-b", requested=1, available=0), at(2))
    order = decision.order
    assert order is not None
    assert order.status == "rejected"
    assert order.reason == "not enough sku-b: 1 wanted, 0 left"
    assert order.reserved == frozenset()
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock"),
                                       ("inventory", "sku-b", "release_stock"),
                                       ("promotions", "SPRING", "return_redemption"),
                                       ("orders", OID, "order_rejected")]
    assert notice(decision).reason == order.reason


def test_a_reservation_arriving_after_the_rejection_is_given_back() -> None:
    rejected = decide(placed(), rejected_answer("sku-b"), at(1)).order
    assert rejected is not None and rejected.status == "rejected"
    late = decide(rejected, reserved_answer("sku-a", 2), at(2))
    assert late.order == rejected
    assert kinds(late.effects) == [("inventory", "sku-a", "release_stock")]
    release = late.effects[0].event
    assert isinstance(release, ReleaseStock) and release.order_id == OID


def test_a_declined_charge_fails_the_order_and_releases_its_stock() -> None:
    decision = decide(reserved(), declined(), at(5))
    order = decision.order
    assert order is not None
    assert (order.status, order.reason, order.reserved) == ("payment_failed", "card_declined",
                                                            frozenset())
    assert order.charged_cents == 0
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock"),
                                       ("inventory", "sku-b", "release_stock"),
                                       ("promotions", "SPRING", "return_redemption"),
                                       ("orders", OID, "order_payment_failed")]


# -- cancel and expire in each status -------------------------------------------------------


def test_cancelling_a_placed_order_releases_every_sku() -> None:
    held = decide(placed(), reserved_answer("sku-b"), at(1)).order
    decision = decide(held, cancel("u-ann"), at(2))
    assert decision.order is not None
    assert (decision.order.status, decision.order.reason) == ("cancelled", "cancelled by u-ann")
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock"),
                                       ("inventory", "sku-b", "release_stock"),
                                       ("promotions", "SPRING", "return_redemption"),
                                       ("orders", OID, "order_cancelled")]
    late = decide(decision.order, reserved_answer("sku-a"), at(3))
    assert kinds(late.effects) == [("inventory", "sku-a", "release_stock")]


def test_cancelling_a_reserved_order_releases_everything_and_charges_nothing() -> None:
    decision = decide(reserved(), cancel(), at(5))
    assert decision.order is not None
    assert (decision.order.status, decision.order.reason) == ("cancelled", "")
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock"),
                                       ("inventory", "sku-b", "release_stock"),
                                       ("promotions", "SPRING", "return_redemption"),
                                       ("orders", OID, "order_cancelled")]


def test_cancelling_a_confirmed_order_returns_its_stock_and_refunds_it() -> None:
    decision = decide(confirmed(), cancel("admin"), at(10))
    order = decision.order
    assert order is not None
    assert (order.status, order.reason, order.charged_cents) == ("cancelled",
                                                                 "cancelled by admin", 2200)
    assert kinds(decision.effects) == [("inventory", "sku-a", "return_stock"),
                                       ("inventory", "sku-b", "return_stock"),
                                       ("promotions", "SPRING", "return_redemption"),
                                       ("payments", OID, "refund_requested"),
                                       ("orders", OID, "order_cancelled")]
    returns = [e.event for e in decision.effects[:2]]
    assert [(r.sku, r.quantity) for r in returns if isinstance(r, ReturnStock)] == [
        ("sku-a", 2), ("sku-b", 1)]
    assert isinstance(decision.effects[3].event, RefundRequested)
    back = decide(order, refunded(), at(11))
    assert back.order is not None
    assert (back.order.status, back.order.refunded_cents) == ("cancelled", 2200)
    assert back.effects == []


@pytest.mark.parametrize("status", ["shipped", "delivered", "rejected", "payment_failed",
                                    "cancelled", "expired"])
def test_cancelling_an_order_past_confirmation_changes_nothing(status: str) -> None:
    order = BUILDERS[status]()
    assert decide(order, cancel(), at(30)) == Decision(order)


@pytest.mark.parametrize("status", ["placed", "reserved"])
def test_an_order_waiting_too_long_expires_and_releases_its_stock(status: str) -> None:
    order = BUILDERS[status]()
    decision = decide(order, ExpireRequested.new(order_id=OID), at(30))
    assert decision.order is not None
    assert (decision.order.status, decision.order.reason) == ("expired", "not paid in time")
    releases = [("inventory", sku, "release_stock") for sku in sorted(set(order.skus))]
    assert kinds(decision.effects) == [*releases, ("promotions", "SPRING", "return_redemption"),
                                       ("orders", OID, "order_expired")]


@pytest.mark.parametrize("status", ["confirmed", "shipped", "delivered", "rejected",
                                    "payment_failed", "cancelled", "expired"])
def test_only_a_placed_or_reserved_order_expires(status: str) -> None:
    order = BUILDERS[status]()
    assert decide(order, ExpireRequested.new(order_id=OID), at(30)) == Decision(order)


@pytest.mark.parametrize("end", [cancel(), ExpireRequested.new(order_id=OID)],
                         ids=["cancelled", "expired"])
def test_a_charge_that_succeeds_after_the_order_ended_is_refunded(end: Event) -> None:
    gone = decide(reserved(), end, at(5)).order
    decision = decide(gone, charged(), at(6))
    order = decision.order
    assert order is not None and gone is not None
    assert (order.status, order.charged_cents, order.history) == (gone.status, 2200,
                                                                  gone.history)
    assert kinds(decision.effects) == [("payments", OID, "refund_requested")]
    again = decide(order, charged(), at(7))
    assert again == Decision(order), "the same charge answered twice asks for one refund"
    back = decide(order, refunded(), at(8)).order
    assert back is not None and back.refunded_cents == back.charged_cents == 2200


def test_a_charge_refused_after_the_order_ended_changes_nothing() -> None:
    gone = decide(reserved(), cancel(), at(5)).order
    assert gone is not None
    assert decide(gone, declined(), at(6)) == Decision(gone)


# -- idempotency ----------------------------------------------------------------------------

DUPLICATES: dict[str, tuple[str, Callable[[], Event]]] = {
    "order placed again": ("placed", placed_event),
    "first reservation again": ("placed", lambda: reserved_answer("sku-a")),
    "last reservation again": ("reserved", lambda: reserved_answer("sku-b")),
    "rejection again": ("rejected", lambda: rejected_answer("sku-a")),
    "rejection after reserved": ("reserved", lambda: rejected_answer("sku-a")),
    "charge again": ("confirmed", charged),
    "charge after shipping": ("shipped", charged),
    "refusal again": ("payment_failed", declined),
    "refusal after the charge": ("confirmed", declined),
    "cancel again": ("cancelled", cancel),
    "expire again": ("expired", lambda: ExpireRequested.new(order_id=OID)),
    "ship again": ("shipped", lambda: ShipRequested.new(order_id=OID)),
    "deliver again": ("delivered", lambda: DeliverRequested.new(order_id=OID)),
    "deliver before shipping": ("confirmed", lambda: DeliverRequested.new(order_id=OID)),
    "ship a reserved order": ("reserved", lambda: ShipRequested.new(order_id=OID)),
    "refund again": ("cancelled", refunded),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_an_answer_that_comes_again_changes_nothing(case: str) -> None:
    status, make = DUPLICATES[case]
    event = make()
    order = decide(BUILDERS[status](), event, at(40)).order
    assert order is not None and order.status == status
    assert decide(order, event, at(41)) == Decision(order)


@pytest.mark.parametrize("status", ["confirmed", "shipped", "delivered"])
def test_a_reservation_answered_after_the_sale_changes_nothing(status: str) -> None:
    """The sku's ledger answers a request asked again after the sale with the sale: nothing
    is held anew, so nothing is released (a release could overtake the commit)."""
    order = BUILDERS[status]()
    assert decide(order, reserved_answer("sku-a"), at(41)) == Decision(order)


def test_a_duplicate_refund_answer_keeps_the_first_amount() -> None:
    back = decide(play(cancel(), order=confirmed()).order, refunded(), at(20)).order
    assert back is not None
    assert decide(back, refunded(999), at(21)) == Decision(back)


@pytest.mark.parametrize("status", STATUSES)
def test_notices_the_saga_itself_sent_change_nothing(status: str) -> None:
    order = BUILDERS[status]()
    update = OrderUpdate(type=f"order_{status}", event_id="e1", occurred_at=NOW, order_id=OID,
                         user_id="u-ann", status=status, total_cents=2200)
    assert decide(order, update, at(50)) == Decision(order)


def test_a_reservation_for_an_unknown_order_is_given_back() -> None:
    decision = decide(None, reserved_answer("sku-a"), NOW)
    assert decision.order is None
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock")]


@pytest.mark.parametrize("event", [rejected_answer("sku-a"), charged(), declined(), cancel(),
                                   refunded(), ShipRequested.new(order_id=OID),
                                   ExpireRequested.new(order_id=OID)],
                         ids=lambda e: e.type)
def test_other_events_for_an_unknown_order_do_nothing(event: Event) -> None:
    assert decide(None, event, NOW) == Decision(None)


def test_a_repeated_charge_of_a_free_order_asks_for_no_refund() -> None:
    free = placed_event((("sku-a", 1, 500),), discount=500)
    order = play(free, redeemed_answer(), reserved_answer("sku-a"), charged(0)).order
    assert order is not None and order.status == "confirmed"
    assert decide(order, charged(0), at(9)) == Decision(order)


# -- the per-customer index ----------------------------------------------------------------


def indexed(order_id: str, minute: int, total: int = 100, user: str = "u-ann") -> OrderIndexed:
    return OrderIndexed.new(user_id=user, order_id=order_id, placed_at=at(minute).isoformat(),
                            total_cents=total)


def test_a_customer_index_lists_orders_oldest_first_once_each() -> None:
    index = index_order(None, indexed("o-2", 5, 250))
    index = index_order(index, indexed("o-1", 1))
    assert index_order(index, indexed("o-2", 5, 250)) == index
    assert index == {"user_id": "u-ann", "orders": [
        {"id": "o-1", "placed_at": at(1).isoformat(), "total_cents": 100},
        {"id": "o-2", "placed_at": at(5).isoformat(), "total_cents": 250}]}


@given(minutes=st.lists(st.integers(0, 10_000), min_size=1, max_size=12, unique=True),
       order=st.randoms(use_true_random=False), limit=st.integers(1, 6))
def test_a_customer_index_is_the_same_whatever_the_arrival_order_and_repeats(
    minutes: list[int], order: Any, limit: int
) -> None:
    events = [indexed(f"o-{m}", m) for m in minutes]
    arrivals = events + [order.choice(events) for _ in range(len(events))]  # repeats
    order.shuffle(arrivals)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(orders_module, "INDEX_LIMIT", limit)
        index: dict[str, Any] | None = None
        for event in arrivals:
            index = index_order(index, event)
    assert index is not None
    newest = sorted(minutes)[-limit:]
    assert [entry["id"] for entry in index["orders"]] == [f"o-{m}" for m in newest]


# -- refusal --------------------------------------------------------------------------------

ALLOWED = {"cancel": {"placed", "reserved", "confirmed"}, "ship": {"confirmed"},
           "deliver": {"shipped"}}
PAST = {"cancel": "cancelled", "ship": "shipped", "deliver": "delivered"}


@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("status", STATUSES)
def test_refusal_says_why_an_action_is_not_allowed(status: str, action: str) -> None:
    order = replace(placed(), status=status)
    why = refusal(order, action)
    if status in ALLOWED[action]:
        assert why is None
    else:
        assert why == f"an order that is {status} cannot be {PAST[action]}"


def test_the_statuses_split_into_active_and_settled() -> None:
    assert set(STATUSES) == ACTIVE | SETTLED
    assert not ACTIVE & SETTLED


# -- rows and wire formats ------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=12)
times = st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
orders = st.builds(
    Order,
    id=texts, user_id=texts, status=st.sampled_from(STATUSES),
    items=st.lists(st.tuples(texts, st.integers(1, 99), st.integers(0, 10**7)),
                   max_size=4).map(tuple),
    subtotal_cents=st.integers(0, 10**8), discount_cents=st.integers(0, 10**8),
    total_cents=st.integers(0, 10**8), payment_method=texts,
    promotion_code=st.none() | texts,
    history=st.lists(st.tuples(st.sampled_from(STATUSES), times), max_size=5).map(tuple),
    reserved=st.frozensets(texts, max_size=4), charged_cents=st.integers(0, 10**8),
    refunded_cents=st.integers(0, 10**8), reason=texts, request_digest=texts,
)


@given(orders)
def test_an_order_survives_its_table_row(order: Order) -> None:
    row = order.to_row()
    assert Order.from_row(row) == order
    assert Order.from_row(json.loads(json.dumps(row))) == order  # the row is JSON as stored


def test_the_row_is_the_api_document() -> None:
    row = confirmed().to_row()
    assert row["items"] == [{"sku": "sku-a", "quantity": 2, "unit_price_cents": 1000},
                            {"sku": "sku-b", "quantity": 1, "unit_price_cents": 500}]
    assert [h["status"] for h in row["history"]] == ["placed", "reserved", "confirmed"]
    assert {"id", "user_id", "status", "subtotal_cents", "discount_cents", "total_cents",
            "history"} <= row.keys()


def test_the_saga_events_decode_from_the_wire() -> None:
    sent = placed_event()
    wired: Event = decode_event(ORDER_EVENTS, sent.dumps())
    assert isinstance(wired, OrderPlaced)
    assert all(isinstance(line, OrderLine) for line in wired.items)
    assert decide(None, wired, NOW).order == decide(None, sent, NOW).order


@pytest.mark.parametrize("status", sorted(SETTLED))
def test_every_notice_the_saga_sends_decodes_as_an_order_update(status: str) -> None:
    order = BUILDERS[status]()
    decision = play(ExpireRequested.new(order_id=OID), order=placed())
    if status != "expired":  # take the notice the order's last step sent
        before = {"confirmed": reserved, "shipped": confirmed, "delivered": shipped,
                  "rejected": placed, "payment_failed": reserved, "cancelled": reserved}
        event = {"confirmed": charged(), "shipped": ShipRequested.new(order_id=OID),
                 "delivered": DeliverRequested.new(order_id=OID),
                 "rejected": rejected_answer("sku-a"), "payment_failed": declined(),
                 "cancelled": cancel()}[status]
        decision = decide(before[status](), event, at(60))
    sent = notice(decision)
    assert (sent.type, sent.status, sent.reason) == (f"order_{status}", status, order.reason)
    back: Event = decode_event(ORDER_EVENTS, sent.dumps())
    assert isinstance(back, OrderUpdate)
    assert (back.type, back.order_id, back.status, back.total_cents) == (
        sent.type, OID, status, 2200)


def test_chasing_a_placed_order_asks_again_for_the_skus_not_yet_held() -> None:
    placed = decide(None, OrderPlaced.new(
        order_id="o-chase", user_id="u", items=[OrderLine(sku="A", quantity=2, unit_price_cents=5),
                                                OrderLine(sku="B", quantity=1, unit_price_cents=7)],
        subtotal_cents=17, discount_cents=0, total_cents=17, payment_method="pm_card_ok"),
        NOW).order
    assert placed is not None
    half = decide(placed, StockReserved.new(order_id="o-chase", sku="A", quantity=2), NOW).order
    assert half is not None
    asked = chase(half)
    assert [(e.topic, e.key, e.event.type) for e in asked] == [
        ("inventory", "B", "reserve_stock")]
    reserved = decide(half, StockReserved.new(order_id="o-chase", sku="B", quantity=1),
                      NOW).order
    assert reserved is not None
    assert [(e.topic, e.event.type) for e in chase(reserved)] == [
        ("payments", "payment_requested")]
    assert chase(replace(reserved, status="confirmed")) == []


# -- promotion codes -------------------------------------------------------------------------


def refused_answer(reason: str = "promotion SPRING is used up (10 redemptions)") -> Event:
    return PromotionRefused.new(code="SPRING", order_id=OID, reason=reason)


def test_an_order_with_a_code_is_charged_only_once_stock_and_code_are_held() -> None:
    decision = play(placed_event(), reserved_answer("sku-a"), reserved_answer("sku-b"))
    assert decision.order is not None
    assert (decision.order.status, decision.order.promotion_state) == ("placed", "pending")
    assert decision.effects == []
    redeem = decide(None, placed_event(), NOW).effects[2].event
    assert isinstance(redeem, RedeemPromotion)
    assert (redeem.code, redeem.order_id, redeem.user_id, redeem.discount_cents,
            redeem.placed_at) == ("SPRING", OID, "u-ann", 300, NOW.isoformat())
    ready = decide(decision.order, redeemed_answer(), at(5))
    assert ready.order is not None
    assert (ready.order.status, ready.order.promotion_state) == ("reserved", "redeemed")
    assert kinds(ready.effects) == [("payments", OID, "payment_requested")]
    charge = ready.effects[0].event
    assert isinstance(charge, PaymentRequested) and charge.amount_cents == 2200


def test_a_refused_code_rejects_the_order_and_releases_its_stock() -> None:
    held = play(placed_event(), reserved_answer("sku-a")).order
    decision = decide(held, refused_answer(), at(3))
    order = decision.order
    assert order is not None
    assert (order.status, order.promotion_state, order.reserved) == ("rejected", "refused",
                                                                     frozenset())
    assert order.reason == "promotion SPRING is used up (10 redemptions)"
    assert kinds(decision.effects) == [("inventory", "sku-a", "release_stock"),
                                       ("inventory", "sku-b", "release_stock"),
                                       ("orders", OID, "order_rejected")]
    assert decide(order, refused_answer(), at(4)) == Decision(order)


def test_a_redemption_that_arrives_after_the_order_ended_is_given_back() -> None:
    pending = play(placed_event()).order
    gone = decide(pending, ExpireRequested.new(order_id=OID), at(30))
    assert gone.order is not None and gone.order.promotion_state == "returned"
    assert ("promotions", "SPRING", "return_redemption") in kinds(gone.effects)
    late = decide(gone.order, redeemed_answer(), at(31))
    assert kinds(late.effects) == [("promotions", "SPRING", "return_redemption")]


@pytest.mark.parametrize("status", ["placed", "reserved", "confirmed", "shipped"])
def test_a_repeated_redemption_answer_changes_nothing(status: str) -> None:
    order = BUILDERS[status]()
    assert decide(order, redeemed_answer(), at(20)) == Decision(order)


def test_a_pending_code_is_asked_again_when_chased() -> None:
    pending = play(placed_event(), reserved_answer("sku-a")).order
    assert pending is not None
    assert kinds(chase(pending)) == [("inventory", "sku-b", "reserve_stock"),
                                     ("promotions", "SPRING", "redeem_promotion")]
    assert kinds(chase(placed())) == [("inventory", "sku-a", "reserve_stock"),
                                      ("inventory", "sku-b", "reserve_stock")]


def test_an_order_without_a_code_asks_for_no_redemption() -> None:
    decision = decide(None, placed_event(discount=0), NOW)
    assert decision.order is not None and decision.order.promotion_state == ""
    assert "promotions" not in {topic for topic, _, _ in kinds(decision.effects)}
    ready = play(reserved_answer("sku-a"), reserved_answer("sku-b"), order=decision.order)
    assert ready.order is not None and ready.order.status == "reserved"
