"""Orders: the saga's events and its state machine, as one pure function.

``decide(order, event, now)`` returns the order after ``event`` and the commands and
notices it causes (``Effect``: a topic, a key and an event). The orders agent applies it to
the orders table and sends the effects; nothing here does I/O. The machine (docs/design.md):

    placed -> (reserve each sku) -> reserved -> (charge) -> confirmed -> shipped -> delivered
       \\-> rejected (any sku short: release the others)
                             \\-> payment_failed (release stock)
     placed/reserved/confirmed -> cancelled (release or return stock, refund if charged)
     placed/reserved too long  -> expired (release stock)

Every event is idempotent by state: an answer that arrives twice, or after the order has
ended, changes nothing or gives back what it would hold (a late reservation is released, a
late charge refunded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import faust

from models.base import Effect, Event, event_types
from models.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    ReturnStock,
    StockRejected,
    StockReserved,
)
from models.payments import (
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
    Refunded,
    RefundRequested,
)
from models.promotions import (
    PromotionRedeemed,
    PromotionRefused,
    RedeemPromotion,
    ReturnRedemption,
)

__all__ = [
    "ACTIVE",
    "MAX_UNITS",
    "ORDER_EVENTS",
    "RETIRED_ORDER_TYPES",
    "SETTLED",
    "CancelRequested",
    "Decision",
    "DeliverRequested",
    "ExpireRequested",
    "Order",
    "OrderIndexed",
    "OrderLine",
    "OrderPlaced",
    "OrderUpdate",
    "PricingError",
    "ShipRequested",
    "chase",
    "decide",
    "index_order",
    "key_reuse",
    "price_order",
    "refusal",
    "request_digest",
]

#: Statuses in which the saga is still working on the order.
ACTIVE = frozenset({"placed", "reserved"})
#: Statuses the saga settles in (``?wait`` returns on these).
SETTLED = frozenset({"confirmed", "shipped", "delivered", "rejected", "payment_failed",
                     "cancelled", "expired"})
#: Statuses in which the order's money is kept (the charge is not refunded).
PAID = frozenset({"confirmed", "shipped", "delivered"})


class OrderLine(faust.Record, serializer="json", include_metadata=False, validation=True,
                coerce=True):
    """One line of an order, priced from the catalog when it was placed."""

    sku: str
    quantity: int
    unit_price_cents: int


class OrderPlaced(Event):
    """A customer placed an order (priced by the API from the catalog)."""

    event_type = "order_placed"
    order_id: str
    user_id: str
    items: list[OrderLine]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    payment_method: str
    promotion_code: str | None = None
    #: The fingerprint of the request that placed it (``request_digest``), "" if unknown.
    request_digest: str = ""


class CancelRequested(Event):
    """The customer or an admin asked to cancel the order."""

    event_type = "cancel_requested"
    order_id: str
    by: str = ""


class ShipRequested(Event):
    """An admin marked the order as shipped."""

    event_type = "ship_requested"
    order_id: str


class DeliverRequested(Event):
    """An admin marked the order as delivered."""

    event_type = "deliver_requested"
    order_id: str


class ExpireRequested(Event):
    """The worker owning the order found it waiting too long for stock or payment."""

    event_type = "expire_requested"
    order_id: str


class OrderIndexed(Event):
    """A customer has a new order (for the per-customer index of orders)."""

    event_type = "order_indexed"
    user_id: str
    order_id: str
    placed_at: str
    total_cents: int


#: How many orders the per-customer index keeps (the newest).
INDEX_LIMIT = 500


def index_order(index: dict[str, Any] | None, event: OrderIndexed) -> dict[str, Any]:
    """Return a customer's order index with ``event``'s order in it (once, newest last)."""
    entries = list((index or {}).get("orders", []))
    if not any(entry["id"] == event.order_id for entry in entries):
        entries.append({"id": event.order_id, "placed_at": event.placed_at,
                        "total_cents": event.total_cents})
        entries.sort(key=lambda entry: entry["placed_at"])
    return {"user_id": event.user_id, "orders": entries[-INDEX_LIMIT:]}


class OrderUpdate(Event):
    """The order reached ``status`` (type ``order_<status>``), for notifications and analytics."""

    order_id: str
    user_id: str
    status: str
    total_cents: int
    reason: str = ""


#: Order events by type; ``order_<status>`` notices all decode as OrderUpdate.
ORDER_EVENTS = {
    **event_types(OrderPlaced, StockReserved, StockRejected, CancelRequested, ShipRequested,
                  DeliverRequested, ExpireRequested, PromotionRedeemed, PromotionRefused),
    **{f"order_{status}": OrderUpdate for status in SETTLED},
}

#: Types older versions wrote to the orders topic that the shop no longer writes
#: (``expiry_sweep``: a task's request to each partition's owner to look for overdue orders,
#: which every worker does on a timer of its own). The topic keeps what they wrote, so every
#: reader of it passes these over: never dead-lettered.
RETIRED_ORDER_TYPES = frozenset({"expiry_sweep"})


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the orders table keeps it."""

    id: str
    user_id: str
    status: str
    items: tuple[tuple[str, int, int], ...]  # (sku, quantity, unit_price_cents)
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    payment_method: str
    promotion_code: str | None
    history: tuple[tuple[str, str], ...]  # (status, ISO time)
    reserved: frozenset[str] = frozenset()
    charged_cents: int = 0
    refunded_cents: int = 0
    reason: str = ""
    #: The promotion code's redemption: "" (no code), pending, redeemed, refused, returned.
    promotion_state: str = ""
    #: The fingerprint of the request that placed it, to tell a retry from a reused key.
    request_digest: str = ""

    @property
    def skus(self) -> list[str]:
        """Return the order's skus."""
        return [sku for sku, _, _ in self.items]

    @property
    def placed_second(self) -> int:
        """Return when the order was placed, in whole seconds (its stock commands carry it)."""
        return int(datetime.fromisoformat(self.history[0][1]).timestamp())

    def to_row(self) -> dict[str, Any]:
        """Return the table row (the API's order document plus the saga's bookkeeping)."""
        return {
            "id": self.id, "user_id": self.user_id, "status": self.status,
            "items": [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in self.items],
            "subtotal_cents": self.subtotal_cents, "discount_cents": self.discount_cents,
            "total_cents": self.total_cents, "payment_method": self.payment_method,
            "promotion_code": self.promotion_code,
            "history": [{"status": s, "at": at} for s, at in self.history],
            "reserved": sorted(self.reserved), "charged_cents": self.charged_cents,
            "refunded_cents": self.refunded_cents, "reason": self.reason,
            "promotion_state": self.promotion_state, "request_digest": self.request_digest,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Order:
        """Return the order kept in ``row``."""
        return cls(
            row["id"], row["user_id"], row["status"],
            tuple((i["sku"], i["quantity"], i["unit_price_cents"]) for i in row["items"]),
            row["subtotal_cents"], row["discount_cents"], row["total_cents"],
            row["payment_method"], row["promotion_code"],
            tuple((h["status"], h["at"]) for h in row["history"]),
            frozenset(row["reserved"]), row["charged_cents"], row["refunded_cents"],
            row["reason"], row.get("promotion_state", ""), row.get("request_digest", ""),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The order after an event (None: still unknown) and the effects to send."""

    order: Order | None
    effects: list[Effect] = field(default_factory=list)


def decide(order: Order | None, event: Event, now: datetime) -> Decision:
    """Return the order after ``event`` and what it causes."""
    if isinstance(event, OrderPlaced):
        return _placed(order, event, now)
    if order is None:
        # An answer for an order this row never saw: give back what it would hold.
        if isinstance(event, StockReserved):
            release = ReleaseStock.new(sku=event.sku, order_id=event.order_id,
                                       correlation_id=event.order_id)
            return Decision(None, [Effect("inventory", event.sku, release)])
        return Decision(None)
    handler = _HANDLERS.get(type(event))
    return handler(order, event, now) if handler else Decision(order)


def chase(order: Order) -> list[Effect]:
    """Return the requests to send again for an order that waits too long for an answer.

    A request or its answer can be lost when a worker dies between writing a row and sending
    what the row caused; asking again is safe, since the inventory agent and the payment step
    answer a repeated request from their state (a held sku answers "reserved" again, a charged
    order answers with its charge).
    """
    if order.status == "placed":
        asks = [
            Effect("inventory", sku, ReserveStock.new(sku=sku, order_id=order.id, quantity=qty,
                                                      placed_at=order.placed_second,
                                                      correlation_id=order.id))
            for sku, qty, _ in order.items if sku not in order.reserved
        ]
        if order.promotion_state == "pending":
            asks.append(_redeem(order))
        return asks
    if order.status == "reserved":
        charge = PaymentRequested.new(order_id=order.id, amount_cents=order.total_cents,
                                      payment_method=order.payment_method,
                                      correlation_id=order.id)
        return [Effect("payments", order.id, charge)]
    return []


def refusal(order: Order, action: str) -> str | None:
    """Return why ``action`` (cancel, ship, deliver) is not allowed now, or None."""
    allowed = {"cancel": ACTIVE | {"confirmed"}, "ship": {"confirmed"},
               "deliver": {"shipped"}}[action]
    if order.status in allowed:
        return None
    return f"an order that is {order.status} cannot be {_PAST[action]}"


_PAST = {"cancel": "cancelled", "ship": "shipped", "deliver": "delivered"}


def _placed(order: Order | None, event: OrderPlaced, now: datetime) -> Decision:
    if order is not None:
        return Decision(order)  # placed twice (a retried request): once is enough
    placed = Order(
        event.order_id, event.user_id, "placed",
        tuple((line.sku, line.quantity, line.unit_price_cents) for line in event.items),
        event.subtotal_cents, event.discount_cents, event.total_cents, event.payment_method,
        event.promotion_code, (("placed", now.isoformat()),),
        promotion_state="pending" if event.promotion_code else "",
        request_digest=event.request_digest,
    )
    reserve = [
        Effect("inventory", sku, ReserveStock.new(sku=sku, order_id=placed.id, quantity=qty,
                                                  placed_at=int(now.timestamp()),
                                                  correlation_id=placed.id))
        for sku, qty, _ in placed.items
    ]
    indexed = OrderIndexed.new(user_id=placed.user_id, order_id=placed.id,
                               placed_at=now.isoformat(), total_cents=placed.total_cents,
                               correlation_id=placed.id)
    redeem = [_redeem(placed)] if placed.promotion_code else []
    return Decision(placed, [*reserve, *redeem,
                             Effect("user-orders", placed.user_id, indexed)])


def _redeem(order: Order) -> Effect:
    assert order.promotion_code is not None
    redeem = RedeemPromotion.new(code=order.promotion_code, order_id=order.id,
                                 user_id=order.user_id, discount_cents=order.discount_cents,
                                 placed_at=order.history[0][1], correlation_id=order.id)
    return Effect("promotions", order.promotion_code, redeem)


def _give_back(order: Order) -> tuple[Order, list[Effect]]:
    """Return the order with its redemption given back (if it holds or awaits one)."""
    if order.promotion_state not in ("pending", "redeemed"):
        return order, []
    assert order.promotion_code is not None
    back = ReturnRedemption.new(code=order.promotion_code, order_id=order.id,
                                correlation_id=order.id)
    return (replace(order, promotion_state="returned"),
            [Effect("promotions", order.promotion_code, back)])


def _charge_if_ready(order: Order, now: datetime) -> Decision:
    """Move to reserved and ask for the charge once every sku and the promotion are held."""
    if order.reserved != set(order.skus) or order.promotion_state not in ("", "redeemed"):
        return Decision(order)
    ready = _moved(order, "reserved", now)
    charge = PaymentRequested.new(order_id=order.id, amount_cents=order.total_cents,
                                  payment_method=order.payment_method, correlation_id=order.id)
    return Decision(ready, [Effect("payments", order.id, charge)])


def _stock_reserved(order: Order, event: StockReserved, now: datetime) -> Decision:
    if order.status != "placed":
        if order.status in ACTIVE or order.status in PAID:
            # A repeated answer: the sku's ledger answers a reservation asked again after the
            # sale with the sale, and holds nothing anew.
            return Decision(order)
        # The order ended (rejected, cancelled, expired) before this answer: give it back.
        return Decision(order, [_inventory(ReleaseStock, event.sku, order)])
    return _charge_if_ready(replace(order, reserved=order.reserved | {event.sku}), now)


def _promotion_redeemed(order: Order, event: PromotionRedeemed, now: datetime) -> Decision:
    if order.status == "placed" and order.promotion_state == "pending":
        return _charge_if_ready(replace(order, promotion_state="redeemed"), now)
    if order.status in ACTIVE or order.status in PAID:
        return Decision(order)  # a repeated answer
    # The order ended before (or while) the code was redeemed: give the redemption back.
    back = ReturnRedemption.new(code=event.code, order_id=order.id, correlation_id=order.id)
    return Decision(replace(order, promotion_state="returned"),
                    [Effect("promotions", event.code, back)])


def _promotion_refused(order: Order, event: PromotionRefused, now: datetime) -> Decision:
    if order.status != "placed" or order.promotion_state != "pending":
        return Decision(order)
    refused = replace(_moved(order, "rejected", now), reason=event.reason,
                      reserved=frozenset(), promotion_state="refused")
    return Decision(refused, [*_release_all(order), _notice(refused)])


def _stock_rejected(order: Order, event: StockRejected, now: datetime) -> Decision:
    if order.status != "placed":
        return Decision(order)
    reason = f"not enough {event.sku}: {event.requested} wanted, {event.available} left"
    rejected, give_back = _give_back(
        replace(_moved(order, "rejected", now), reason=reason, reserved=frozenset()))
    return Decision(rejected, [*_release_all(order), *give_back, _notice(rejected)])


def _payment_succeeded(order: Order, event: PaymentSucceeded, now: datetime) -> Decision:
    if order.charged_cents or order.status in PAID:
        return Decision(order)  # the answer came twice (a free order is charged 0)
    charged = replace(order, charged_cents=event.amount_cents)
    if order.status == "reserved":
        confirmed = replace(_moved(charged, "confirmed", now), reserved=frozenset())
        commits = [_inventory(CommitStock, sku, order) for sku in order.skus]
        return Decision(confirmed, [*commits, _notice(confirmed)])
    # The order ended while the charge was under way: give the money back.
    refund = RefundRequested.new(order_id=order.id, correlation_id=order.id)
    return Decision(charged, [Effect("payments", order.id, refund)])


def _payment_failed(order: Order, event: PaymentFailed, now: datetime) -> Decision:
    if order.status != "reserved":
        return Decision(order)
    failed, give_back = _give_back(replace(_moved(order, "payment_failed", now),
                                           reason=event.reason, reserved=frozenset()))
    return Decision(failed, [*_release_all(order), *give_back, _notice(failed)])


def _cancel(order: Order, event: CancelRequested, now: datetime) -> Decision:
    return _end(order, "cancelled", now, f"cancelled by {event.by}" if event.by else "")


def _expire(order: Order, event: ExpireRequested, now: datetime) -> Decision:
    if order.status not in ACTIVE:
        return Decision(order)
    return _end(order, "expired", now, "not paid in time")


def _end(order: Order, status: str, now: datetime, reason: str) -> Decision:
    if order.status in ACTIVE:
        ended, give_back = _give_back(
            replace(_moved(order, status, now), reason=reason, reserved=frozenset()))
        return Decision(ended, [*_release_all(order), *give_back, _notice(ended)])
    if order.status == "confirmed":
        ended, give_back = _give_back(replace(_moved(order, status, now), reason=reason))
        returns = [
            Effect("inventory", sku, ReturnStock.new(sku=sku, order_id=order.id, quantity=qty,
                                                     placed_at=order.placed_second,
                                                     correlation_id=order.id))
            for sku, qty, _ in order.items
        ]
        refund = RefundRequested.new(order_id=order.id, correlation_id=order.id)
        return Decision(ended, [*returns, *give_back, Effect("payments", order.id, refund),
                                _notice(ended)])
    return Decision(order)


def _ship(order: Order, event: ShipRequested, now: datetime) -> Decision:
    if order.status != "confirmed":
        return Decision(order)
    shipped = _moved(order, "shipped", now)
    return Decision(shipped, [_notice(shipped)])


def _deliver(order: Order, event: DeliverRequested, now: datetime) -> Decision:
    if order.status != "shipped":
        return Decision(order)
    delivered = _moved(order, "delivered", now)
    return Decision(delivered, [_notice(delivered)])


def _refunded(order: Order, event: Refunded, now: datetime) -> Decision:
    if order.refunded_cents:
        return Decision(order)
    return Decision(replace(order, refunded_cents=event.amount_cents))


def _moved(order: Order, status: str, now: datetime) -> Order:
    return replace(order, status=status, history=(*order.history, (status, now.isoformat())))


def _release_all(order: Order) -> list[Effect]:
    """Release every sku of an ending order, not only those it knows it holds: a sku whose
    answer is still on its way (or was lost in a crash) may hold stock too, and a release of
    nothing held changes nothing."""
    return [_inventory(ReleaseStock, sku, order) for sku in sorted(set(order.skus))]


def _inventory(kind: type[ReleaseStock] | type[CommitStock], sku: str, order: Order) -> Effect:
    return Effect("inventory", sku, kind.new(sku=sku, order_id=order.id,
                                             placed_at=order.placed_second,
                                             correlation_id=order.id))


def notice_id(order: Order) -> str:
    """Return the event id of the notice of ``order``'s latest status change: the same for the
    same change, so a change decided again (its first decision's row lost in a crash, its
    notice not) announces itself with the id its readers already know."""
    step = f"{order.id}:{order.status}:{len(order.history)}"
    return hashlib.blake2b(step.encode(), digest_size=16).hexdigest()


def _notice(order: Order) -> Effect:
    notice = OrderUpdate(
        type=f"order_{order.status}", event_id=notice_id(order),
        occurred_at=datetime.fromisoformat(order.history[-1][1]), correlation_id=order.id,
        order_id=order.id, user_id=order.user_id, status=order.status,
        total_cents=order.total_cents, reason=order.reason)
    return Effect("orders", order.id, notice)


#: Most units of one product an order may hold.
MAX_UNITS = 100


class PricingError(ValueError):
    """The order cannot be priced; ``problems`` name each sku at fault."""

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


def price_order(lines: Iterable[tuple[str, int]],
                catalog: Mapping[str, Mapping[str, Any] | None]) -> tuple[list[OrderLine], int]:
    """Return the lines (sku, quantity) priced from ``catalog`` rows, the same skus merged,
    and the subtotal; raise PricingError for an unknown sku or too many of one."""
    quantities: dict[str, int] = {}
    for sku, quantity in lines:
        quantities[sku] = quantities.get(sku, 0) + quantity
    unknown = [sku for sku in quantities if "name" not in (catalog.get(sku) or {})]
    if unknown:
        raise PricingError("the order names products that do not exist",
                           [{"field": "items.sku", "problem": f"unknown sku {sku}"}
                            for sku in unknown])
    too_many = [sku for sku, qty in quantities.items() if qty > MAX_UNITS]
    if too_many:
        raise PricingError(f"at most {MAX_UNITS} of one product per order",
                           [{"field": "items.quantity", "problem": sku} for sku in too_many])
    priced = [OrderLine(sku=sku, quantity=qty,
                        unit_price_cents=(catalog.get(sku) or {})["price_cents"])
              for sku, qty in quantities.items()]
    return priced, sum(line.quantity * line.unit_price_cents for line in priced)


_HANDLERS: dict[type[Event], Any] = {
    StockReserved: _stock_reserved,
    StockRejected: _stock_rejected,
    PaymentSucceeded: _payment_succeeded,
    PaymentFailed: _payment_failed,
    CancelRequested: _cancel,
    ExpireRequested: _expire,
    ShipRequested: _ship,
    DeliverRequested: _deliver,
    Refunded: _refunded,
    PromotionRedeemed: _promotion_redeemed,
    PromotionRefused: _promotion_refused,
}


def request_digest(body: Mapping[str, Any]) -> str:
    """Return a request body's fingerprint: the SHA-256 of its canonical JSON.

    ``body`` is the validated body as JSON values, so neither whitespace nor the order of
    its keys changes the fingerprint; the order of a list's items does.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_reuse(stored: str | None, digest: str) -> Literal["new", "same", "other"]:
    """Return what a request with an Idempotency-Key finds under its key.

    ``stored`` is the digest kept with what the key made (None: nothing yet): "new" (nothing
    yet), "same" (a retry of the same body) or "other" (the key was used with another body).
    A row kept without a digest is taken as "same": nothing tells it apart from a retry.
    """
    if stored is None:
        return "new"
    return "same" if stored in ("", digest) else "other"
