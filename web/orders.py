"""Orders and payments HTTP: place, read, wait for, cancel, ship and deliver orders.

An order is read and changed on the worker that owns its key (``app.table_route``), where
``?wait=N`` can wait for the orders agent to move it. Placing it needs no owner: the API
prices it from this worker's copy of the catalog and puts ``OrderPlaced`` on the topic; but
an order placed with an ``Idempotency-Key`` is placed on the owner of its id, which can tell
a retry from a reused key (see ``OrdersView.post``). A placement or an action answers once
the orders agent has applied it, with the order as stored (web/positions.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, NamedTuple, cast

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.topics import orders_topic
from app import app
from models.base import Event, utcnow
from models.orders import (
    SETTLED,
    CancelRequested,
    DeliverRequested,
    Order,
    OrderLine,
    OrderPlaced,
    PricingError,
    ShipRequested,
    price_order,
    refusal,
    request_digest,
)
from models.positions import Written
from models.promotions import PromotionError, discount_for, normalise_code
from runtime.tables import derived
from tables.catalog import catalog
from tables.orders import orders, orders_by_user, watchers
from tables.payments import payment_of
from tables.promotions import promotions
from web.bodies import Unprocessable, read_body, read_query
from web.errors import Conflict, NotFound
from web.idempotency import Keyed, first_of_key
from web.identity import Identity, may_see, require
from web.middleware import forwarding_headers, request_id
from web.openapi import WRITE_ACCEPTED, endpoint
from web.positions import accepted, pending, visible, written
from web.queries import WaitQuery
from web.routing import Unavailable, on_owner, owner_url, route_to_owner
from web.views import ShopView, json_bytes

__all__ = ["OrderIn", "OrderLineOut", "OrderOut", "OrderPage", "StatusChange"]


# -- Answers -------------------------------------------------------------------------------


class OrderLineOut(BaseModel):
    """One priced line of an order."""

    sku: str
    quantity: int
    unit_price_cents: int


class StatusChange(BaseModel):
    """One entry of an order's history."""

    status: str
    at: str


class OrderOut(BaseModel):
    """An order with its status history."""

    id: str
    user_id: str
    status: str
    items: list[OrderLineOut]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    payment_method: str
    promotion_code: str | None = None
    history: list[StatusChange]
    reason: str | None = None


class OrderPage(BaseModel):
    """A page of a customer's orders, newest first."""

    items: list[OrderOut]
    total: int
    page: int
    per_page: int

#: Keyed orders: the first ``OrderPlaced`` of a key wins.
KEYED_ORDERS = Keyed(orders, watchers, "request_digest", "order", "placed")
ORDER_IDS = uuid.UUID("6f1b3c1e-3c1d-4e55-9a59-6b7c1f0e2d11")  # namespace of order ids



class LineIn(BaseModel):
    """One sku and how many."""

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=100)


class OrderIn(BaseModel):
    """An order as a customer places it (prices come from the catalog, never the client)."""

    items: list[LineIn] = Field(min_length=1, max_length=50)
    promotion_code: str | None = Field(default=None, max_length=64)
    payment_method: str = Field(pattern=r"^pm_[a-z0-9_]{1,60}$")


def public_order(row: dict[str, Any]) -> dict[str, Any]:
    """Return an order row as the API shows it."""
    return {k: row[k] for k in ("id", "user_id", "status", "items", "subtotal_cents",
                                "discount_cents", "total_cents", "payment_method",
                                "promotion_code", "history", "reason")}


def price(body: OrderIn) -> tuple[list[OrderLine], int]:
    """Return the order's lines priced from the catalog (same skus merged) and the subtotal."""
    try:
        return price_order(((line.sku, line.quantity) for line in body.items), catalog)
    except PricingError as exc:
        raise Unprocessable(str(exc), details=exc.problems) from None


def promotion_discount(code: str, lines: list[OrderLine], user_id: str) -> int:
    """Return the discount ``code`` gives the order now, or refuse it with why (422).

    The promotions agent counts the redemption when the saga asks; this check spares the
    customer an order that is sure to be refused.
    """
    priced = [(catalog[line.sku]["category"], line.quantity, line.unit_price_cents)
              for line in lines]
    try:
        return discount_for(promotions.get(code), priced, user_id, utcnow())
    except PromotionError as exc:
        raise Unprocessable(str(exc), details=[{"field": "promotion_code",
                                                "problem": str(exc)}]) from None


def order_id_for(caller: Identity, idempotency_key: str | None) -> str:
    """Return the order id: the same for a retried request with the same Idempotency-Key.

    The key is the caller's own: the same key from two customers names two orders.
    """
    if idempotency_key:
        return uuid.uuid5(ORDER_IDS, f"{caller.user_id}\n{idempotency_key}").hex
    return uuid.uuid4().hex


async def send_order(request: Request, caller: Identity, body: OrderIn, order_id: str,
                     digest: str) -> Written:
    """Price the order (or refuse it, 422), put ``OrderPlaced`` on the topic, return where."""
    lines, subtotal = price(body)
    code = normalise_code(body.promotion_code) if body.promotion_code else None
    discount = promotion_discount(code, lines, caller.user_id) if code else 0
    placed = OrderPlaced.new(
        order_id=order_id, user_id=caller.user_id, items=lines, subtotal_cents=subtotal,
        discount_cents=discount, total_cents=subtotal - discount,
        payment_method=body.payment_method, promotion_code=code, request_digest=digest,
        correlation_id=request_id(request) or order_id)
    return written(await (await orders_topic.send(key=order_id, value=placed.dumps())))


async def wait_until_settled(order_id: str, seconds: float) -> dict[str, Any] | None:
    """Return the order once it is settled, or as it is when ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    row = orders.get(order_id)
    while (row is None or row["status"] not in SETTLED) and time.monotonic() < deadline:
        change = watchers.watch(order_id)
        try:
            row = await asyncio.wait_for(change, deadline - time.monotonic())
        except TimeoutError:
            watchers.forget(order_id, change)
            break
    return orders.get(order_id)


class ListQuery(BaseModel):
    """A page of a customer's orders (admins may name the customer)."""

    user_id: str | None = Field(default=None, max_length=128)
    page: int = Field(default=1, ge=1, le=1000)
    per_page: int = Field(default=20, ge=1, le=50)


@endpoint("GET", "/api/orders", query=ListQuery, roles=(), response=OrderPage, errors=(503,),
          summary="The caller's orders, newest first (admins may name ?user_id=).")
@endpoint("POST", "/api/orders", body=OrderIn, roles=("customer", "admin"), status=201,
          response=OrderOut, summary="Place an order (customer or admin).",
          errors=(409, 422, 503), also=WRITE_ACCEPTED,
          headers={"Idempotency-Key": "the caller's key for this order: a retry with the same "
                                      "key and body places it once and answers 201 with the "
                                      "same order; the same key with another body answers 422 "
                                      "(idempotency_key_reused); 409 "
                                      "(idempotency_key_in_progress): the key's first "
                                      "request is still being processed, retry"})
class OrdersView(ShopView):
    """A customer's orders, newest first (GET), and placing an order (POST)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)
        query = read_query(request, ListQuery)
        user_id = query.user_id if caller.is_admin and query.user_id else caller.user_id

        async def local() -> Response:
            entries = (orders_by_user.get(user_id) or {}).get("orders", [])
            newest = list(reversed(entries))
            start = (query.page - 1) * query.per_page
            page = newest[start:start + query.per_page]
            items = await asyncio.gather(*(current_order(entry["id"], request) for entry in page))
            return self.json({"items": [item for item in items if item], "total": len(entries),
                              "page": query.page, "per_page": query.per_page})

        return await on_owner(orders_by_user.name, user_id, request, local)

    async def post(self, request: Request) -> Response:
        """Place an order (customer or admin).

        With an ``Idempotency-Key`` the order's id derives from the caller and the key, and
        the request is answered by the worker that owns that id, which keeps the digest of
        the body (``request_digest``) with the order. An order already there with the same
        digest is a retry: 202 with its id, as the first request was answered, and nothing
        is sent again. With another digest the key was reused: 422. No order yet: it is
        priced and sent, and the first ``OrderPlaced`` of the key wins (web/idempotency.py).
        """
        caller = require(request, "customer", "admin")
        body = await read_body(request, OrderIn)
        key = request.headers.get("Idempotency-Key")
        if not key:
            order_id = order_id_for(caller, None)
            sent = await send_order(request, caller, body, order_id, "")
            return await self.placed(request, order_id, [sent])
        order_id = order_id_for(caller, key)
        digest = request_digest(body.model_dump(mode="json"))

        async def once() -> Response:
            sent: list[Written] = []

            async def create() -> None:
                sent.append(await send_order(request, caller, body, order_id, digest))

            await first_of_key(KEYED_ORDERS, order_id, digest, create)
            return await self.placed(request, order_id, sent)

        return await on_owner(orders.name, order_id, request, once)

    async def placed(self, request: Request, order_id: str, sent: list[Written]) -> Response:
        """Return the answer of a placed order: 201, the order as stored (from its owner) and
        its ``Location``; 202 and a ``Shop-Position`` if the orders agent did not apply it,
        or the customer's list of orders did not take it, in time. ``sent`` is empty for a
        keyed retry (the order is there)."""
        location = f"/api/orders/{order_id}"
        later = await pending(app, sent)  # the order, and its place in the customer's list
        shown = not later and await current_order(order_id, request)
        if not shown and not sent:
            raise Unavailable("this order is not readable on its owner yet; retry in a second")
        if not shown:
            return accepted(self, {"id": order_id, "status": "placed"}, location,
                            later or sent)
        return self.json(shown, status=201, headers={"Location": location})


@endpoint("GET", "/api/orders/{order_id}", query=WaitQuery, roles=(), response=OrderOut,
          errors=(503,), also={202: "?wait=N ran out before the order settled: the order as "
                                    "it is now"})
class OrderView(ShopView):
    """One order with its history (owner or admin); ``?wait=N`` waits for it to settle."""

    @route_to_owner(orders, match_info="order_id")
    async def get(self, request: Request, order_id: str) -> Response:
        caller = require(request)
        wait = read_query(request, WaitQuery).wait
        shown = derived(orders, order_id, shown_order)
        if shown is not None and not may_see(caller, shown.user_id):
            raise NotFound(f"no order {order_id!r}")  # someone else's: no waiting on it
        if shown is not None and (shown.settled or not wait):
            return self.json_bytes(shown.body)
        row = await wait_until_settled(order_id, wait) if wait else None
        if row is None or not may_see(caller, row["user_id"]):
            raise NotFound(f"no order {order_id!r}")
        settled = row["status"] in SETTLED
        return self.json(public_order(row), status=200 if settled else 202)


class ShownOrder(NamedTuple):
    """What ``GET /api/orders/{id}`` needs of a stored order: whose, settled or not, and the
    answer's bytes."""

    user_id: str
    settled: bool
    body: bytes


def shown_order(row: dict[str, Any] | None) -> ShownOrder | None:
    """Return the order as ``GET /api/orders/{id}`` shows it (None: no order)."""
    if row is None:
        return None
    return ShownOrder(row["user_id"], row["status"] in SETTLED, json_bytes(public_order(row)))


async def current_order(order_id: str, request: Request) -> dict[str, Any] | None:
    """Return an order as its owner worker has it now (None if it is not there yet)."""
    owner = await owner_url(orders.name, order_id)
    if owner is None:
        row = orders.get(order_id)
        return public_order(row) if row else None
    headers = {k: v for k, v in request.headers.items()
               if k.lower().startswith("x-") or k.lower() == "authorization"}
    headers.update(forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret))
    async with app.http_client.get(f"{str(owner).rstrip('/')}/api/orders/{order_id}",
                                   headers=headers) as answer:
        return cast(dict[str, Any], await answer.json()) if answer.status == 200 else None


def order_action(action: str, roles: tuple[str, ...], make: type[Event]) -> type[ShopView]:
    """Return the view of ``POST /api/orders/{id}/<action>``."""

    class ActionView(ShopView):
        @route_to_owner(orders, match_info="order_id")
        async def post(self, request: Request, order_id: str) -> Response:
            caller = require(request, *roles)
            row = orders.get(order_id)
            if row is None or not may_see(caller, row["user_id"]):
                raise NotFound(f"no order {order_id!r}")
            reason = refusal(Order.from_row(row), action)
            if reason:
                raise Conflict(reason)
            fields: dict[str, Any] = {"order_id": order_id, "correlation_id": order_id}
            if make is CancelRequested:
                fields["by"] = "admin" if caller.is_admin else "customer"
            event = make.new(**fields)
            sent = written(await (await orders_topic.send(key=order_id, value=event.dumps())))
            if not await visible(app, [sent]):
                return accepted(self, public_order(row), f"/api/orders/{order_id}", [sent])
            return self.json(public_order(orders.get(order_id) or row))

    ActionView.__name__ = f"{action.title()}OrderView"
    return ActionView


endpoint(
    "POST", "/api/orders/{order_id}/cancel", also=WRITE_ACCEPTED, roles=("customer", "admin"),
    response=OrderOut, errors=(409, 503),
    summary="Cancel an order (owner or admin); a charged order is refunded.")(
        order_action("cancel", ("customer", "admin"), CancelRequested))
endpoint(
    "POST", "/api/orders/{order_id}/ship", also=WRITE_ACCEPTED, roles=("admin",),
    response=OrderOut, errors=(409, 503), summary="Ship a confirmed order (admin).")(
        order_action("ship", ("admin",), ShipRequested))
endpoint(
    "POST", "/api/orders/{order_id}/deliver", also=WRITE_ACCEPTED, roles=("admin",),
    response=OrderOut, errors=(409, 503), summary="Mark a shipped order delivered (admin).")(
        order_action("deliver", ("admin",), DeliverRequested))


@endpoint("GET", "/api/payments/{order_id}", roles=(), errors=(503,))
class PaymentView(ShopView):
    """The payment of an order (owner or admin)."""

    @route_to_owner(orders, match_info="order_id")
    async def get(self, request: Request, order_id: str) -> Response:
        caller = require(request)
        order = orders.get(order_id)
        payment = payment_of(order)
        if order is None or payment is None or not may_see(caller, order["user_id"]):
            raise NotFound(f"no payment for order {order_id!r}")
        return self.json({k: v for k, v in payment.items() if not k.startswith("_")})
