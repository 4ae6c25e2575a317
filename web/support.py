"""Support HTTP: open, list, read, comment on, assign, resolve and reopen tickets.

A ticket is read and changed on the worker that owns its key (web/routing.py), which
checks who may do what against the ticket as it is (models/support.py), puts the event on
the ``support`` topic and waits there for the support agent to apply it (web/positions.py):
200 with the ticket changed, or, after SHOP_WRITE_WAIT_S, 202 with the ticket as it still is
and a ``Shop-Position``. A new ticket answers 201 once applied the same way. Lists are
answered by the board's worker (the single writer of the ticket index). A customer sees only
their own tickets; someone else's answers 404, as if absent.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.topics import support_topic
from app import app
from models.base import Event
from models.orders import request_digest
from models.positions import Written
from models.support import (
    Ticket,
    TicketAssigned,
    TicketCommented,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    decide,
    may_see_ticket,
    refusal,
    role_of,
)
from models.support_board import UNASSIGNED
from tables.support import ticket_index, ticket_watchers, tickets
from web.bodies import Unprocessable, read_body, read_query
from web.errors import Conflict, NotFound
from web.idempotency import Keyed, first_of_key
from web.identity import Forbidden, Identity, require
from web.middleware import request_id
from web.openapi import WRITE_ACCEPTED, endpoint
from web.orders import current_order
from web.positions import accepted, visible, written
from web.routing import on_owner, route_to_owner
from web.support_models import (
    AssignIn,
    CommentIn,
    ResolveIn,
    TicketIn,
    TicketOut,
    TicketPage,
)
from web.views import ShopView

__all__ = ["public_ticket"]

#: Keyed tickets: the first ``TicketOpened`` of a key wins.
KEYED_TICKETS = Keyed(tickets, ticket_watchers, "_request_digest", "ticket", "opened")
TICKET_IDS = uuid.UUID("2d0c6c55-6f0e-4d8e-a8f4-1e4b3a9d7c21")  # namespace of ticket ids



class ListQuery(BaseModel):
    """Filters and a page of tickets (customers: their own, support and admins: all)."""

    status: Literal["open", "assigned", "resolved", "reopened"] | None = None
    assignee: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@:()-]{1,128}$",
                                 description='a user id, "me" or "(unassigned)"')
    page: int = Field(default=1, ge=1, le=1000)
    per_page: int = Field(default=20, ge=1, le=100)


def public_ticket(row: dict[str, Any]) -> dict[str, Any]:
    """Return a ticket row as the API shows it."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def ticket_id_for(caller: Identity, idempotency_key: str | None) -> str:
    """Return a new ticket's id: the same for a retried request with the same key."""
    if idempotency_key:
        return uuid.uuid5(TICKET_IDS, f"{caller.user_id}\n{idempotency_key}").hex
    return uuid.uuid4().hex


async def check_own_order(order_id: str, caller: Identity, request: Request) -> None:
    """Refuse (422) an order that is not one of the caller's own (asked of its owner)."""
    order = await current_order(order_id, request)
    if order is None or order.get("user_id") != caller.user_id:
        raise Unprocessable("order_id must name one of your own orders", details=[
            {"field": "order_id", "problem": f"no order {order_id!r} of yours"}])


@endpoint("GET", "/api/support/tickets", query=ListQuery, roles=(), response=TicketPage,
          errors=(503,), summary="Tickets, newest first: a customer's own; support and "
                                 "admins see all (filters status, assignee).")
@endpoint("POST", "/api/support/tickets", body=TicketIn, roles=("customer", "admin"),
          status=201, response=TicketOut, errors=(409, 422, 503),
          summary="Open a ticket, optionally about one of the caller's own orders.",
          headers={"Idempotency-Key": "the caller's key for this ticket: a retry with the "
                                      "same key and body opens it once and answers 201 with "
                                      "the ticket; the same key with another body answers 422 "
                                      "(idempotency_key_reused); 409 "
                                      "(idempotency_key_in_progress): the key's first "
                                      "request is still being processed, retry"})
class TicketsView(ShopView):
    """The caller's tickets (GET) and opening a ticket (POST)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)
        query = read_query(request, ListQuery)
        staff = role_of(caller.roles) != "customer"
        assignee = caller.user_id if query.assignee == "me" else query.assignee

        async def local() -> Response:
            rows = [row for row in ticket_index.values()
                    if (staff or row["user_id"] == caller.user_id)
                    and (query.status is None or row["status"] == query.status)
                    and (assignee is None or (row["assignee"] or UNASSIGNED) == assignee)]
            rows.sort(key=lambda row: row["opened_at"], reverse=True)
            start = (query.page - 1) * query.per_page
            page = [public_ticket(row) for row in rows[start:start + query.per_page]]
            return self.json({"items": page, "total": len(rows), "page": query.page,
                              "per_page": query.per_page})

        return await on_owner(ticket_index.name, "all", request, local)

    async def post(self, request: Request) -> Response:
        """Open a ticket, optionally about one of the caller's own orders.

        With an ``Idempotency-Key`` the rule of ``POST /api/orders``: the ticket's id derives
        from the caller and the key, the owner of that id answers and keeps the body's digest
        with the ticket. The same digest is a retry: 201 with the ticket as it is now, nothing
        sent again; another digest: 422. No ticket yet: it is sent, and the first
        ``TicketOpened`` of the key wins (web/idempotency.py).
        """
        caller = require(request, "customer", "admin")
        body = await read_body(request, TicketIn)
        key = request.headers.get("Idempotency-Key")
        if not key:
            ticket_id = ticket_id_for(caller, None)
            opened, sent = await open_ticket(request, caller, body, ticket_id, "")
            ticket = decide(None, opened).ticket
            assert ticket is not None
            if not await visible(app, [sent]):
                return accepted(self, public_ticket(ticket.to_row()),
                                f"/api/support/tickets/{ticket_id}", [sent])
            # A new id: the row the support agent applied is the one the event decides.
            return self.opened(public_ticket(ticket.to_row()))
        ticket_id = ticket_id_for(caller, key)
        digest = request_digest(body.model_dump(mode="json"))

        async def once() -> Response:
            row = await first_of_key(
                KEYED_TICKETS, ticket_id, digest,
                lambda: open_ticket(request, caller, body, ticket_id, digest))
            return self.opened(public_ticket(row))

        return await on_owner(tickets.name, ticket_id, request, once)

    def opened(self, ticket: dict[str, Any]) -> Response:
        """Return the answer of an opened ticket: 201, the ticket and its ``Location``."""
        return self.json(ticket, status=201,
                         headers={"Location": f"/api/support/tickets/{ticket['id']}"})


async def open_ticket(request: Request, caller: Identity, body: TicketIn, ticket_id: str,
                      digest: str) -> tuple[TicketOpened, Written]:
    """Check the order it is about (422 if not the caller's), send ``TicketOpened``; return
    it and where it landed."""
    if body.order_id:
        await check_own_order(body.order_id, caller, request)
    opened = TicketOpened.new(
        ticket_id=ticket_id, actor_id=caller.user_id, actor_role=role_of(caller.roles),
        subject=body.subject, body=body.body, order_id=body.order_id, request_digest=digest,
        correlation_id=request_id(request) or ticket_id)
    return opened, written(await (await support_topic.send(key=ticket_id,
                                                          value=opened.dumps())))


def visible_ticket(caller: Identity, ticket_id: str) -> Ticket:
    """Return the ticket if the caller may see it (its owner, support, admin), else 404."""
    row = tickets.get(ticket_id)
    if row is None or not may_see_ticket(ticket := Ticket.from_row(row), caller.user_id,
                                         role_of(caller.roles)):
        raise NotFound(f"no ticket {ticket_id!r}")
    return ticket


@endpoint("GET", "/api/support/tickets/{ticket_id}", roles=(), response=TicketOut,
          errors=(503,))
class TicketView(ShopView):
    """One ticket with its comments and history (its owner, support, admin)."""

    @route_to_owner(tickets, match_info="ticket_id")
    async def get(self, request: Request, ticket_id: str) -> Response:
        caller = require(request)
        return self.json(public_ticket(visible_ticket(caller, ticket_id).to_row()))


def ticket_action(action: str, body_model: type[BaseModel] | None) -> type[ShopView]:
    """Return the view of ``POST /api/support/tickets/{id}/<action>``."""

    class ActionView(ShopView):
        @route_to_owner(tickets, match_info="ticket_id")
        async def post(self, request: Request, ticket_id: str) -> Response:
            caller = require(request)
            ticket = visible_ticket(caller, ticket_id)
            body = await read_body(request, body_model) if body_model else None
            role = role_of(caller.roles)
            assignee = getattr(body, "assignee", None)
            assignee = caller.user_id if assignee == "me" else assignee
            refused = refusal(ticket, action, caller.user_id, role, assignee)
            if refused is not None:
                raise (Forbidden if refused.kind == "forbidden" else Conflict)(refused.message)
            event = _event(action, ticket_id, caller, role, body, assignee,
                           request_id(request) or ticket_id)
            sent = written(await (await support_topic.send(key=ticket_id, value=event.dumps())))
            if not await visible(app, [sent]):
                return accepted(self, public_ticket(ticket.to_row()),
                                f"/api/support/tickets/{ticket_id}", [sent])
            return self.json(public_ticket(visible_ticket(caller, ticket_id).to_row()))

    ActionView.__name__ = f"{action.title()}TicketView"
    return ActionView


def _event(action: str, ticket_id: str, caller: Identity, role: str, body: BaseModel | None,
           assignee: str | None, correlation_id: str) -> Event:
    fields: dict[str, Any] = {"ticket_id": ticket_id, "actor_id": caller.user_id,
                              "actor_role": role, "correlation_id": correlation_id}
    if action == "comment":
        return TicketCommented.new(body=cast(CommentIn, body).body, **fields)
    if action == "assign":
        return TicketAssigned.new(assignee=assignee, **fields)
    if action == "resolve":
        return TicketResolved.new(resolution=cast(ResolveIn, body).resolution, **fields)
    return TicketReopened.new(**fields)


_ACTIONS: dict[str, tuple[str, type[BaseModel] | None, tuple[str, ...], str]] = {
    "comments": ("comment", CommentIn, (), "Comment on a ticket (its owner, support, admin)."),
    "assign": ("assign", AssignIn, ("support", "admin"),
               'Assign a ticket to a support or admin user id, or "me" (support, admin).'),
    "resolve": ("resolve", ResolveIn, ("support", "admin"),
                "Resolve a ticket (support, admin)."),
    "reopen": ("reopen", None, (), "Reopen a resolved ticket (its owner, support, admin)."),
}

for _path, (_action, _body, _roles, _summary) in _ACTIONS.items():
    _route = f"/api/support/tickets/{{ticket_id}}/{_path}"
    endpoint(
        "POST", _route, body=_body, roles=_roles, response=TicketOut,
        errors=(409, 503), summary=_summary, also=WRITE_ACCEPTED)(ticket_action(_action, _body))
