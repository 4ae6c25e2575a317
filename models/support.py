"""Customer support: ticket events and the ticket's state machine, as pure functions.

A customer opens a ticket (optionally about one of their own orders); the customer and
support staff comment; staff assign it and resolve it; the customer or staff reopen a
resolved ticket::

    open -> assigned -> resolved -> reopened -> assigned -> resolved ...
      \\------------------^  \\-> (resolved straight from open or reopened)

``decide(ticket, event)`` returns the ticket after ``event`` and what it causes (one
``TicketChanged`` for the support feed). It checks who may do what itself, so a request
that raced past the view's check changes nothing, and it remembers the id of every event it
applied, so a replayed event changes nothing. The first response is the first comment by
support staff (not the ticket's owner); the resolution time runs from the latest (re)open.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from models.base import Effect, Event, event_types

__all__ = [
    "ACTIVE",
    "STAFF",
    "SUPPORT_EVENTS",
    "Comment",
    "Decision",
    "Refusal",
    "Step",
    "Ticket",
    "TicketAssigned",
    "TicketChanged",
    "TicketCommented",
    "TicketEvent",
    "TicketOpened",
    "TicketReopened",
    "TicketResolved",
    "decide",
    "may_see_ticket",
    "refusal",
    "role_of",
]

OPEN, ASSIGNED, RESOLVED, REOPENED = "open", "assigned", "resolved", "reopened"
#: Statuses of a ticket that waits for support.
ACTIVE = frozenset({OPEN, ASSIGNED, REOPENED})
#: Roles of support staff.
STAFF = frozenset({"support", "admin"})


class TicketOpened(Event):
    """A customer opened a ticket (optionally about one of their orders)."""

    event_type = "ticket_opened"
    ticket_id: str
    actor_id: str
    actor_role: str
    subject: str
    body: str
    order_id: str | None = None
    #: The fingerprint of the request that opened it (``models.orders.request_digest``).
    request_digest: str = ""


class TicketAssigned(Event):
    """Support staff assigned the ticket to ``assignee``."""

    event_type = "ticket_assigned"
    ticket_id: str
    actor_id: str
    actor_role: str
    assignee: str


class TicketCommented(Event):
    """The owner or support staff commented (the comment's id is the event id)."""

    event_type = "ticket_commented"
    ticket_id: str
    actor_id: str
    actor_role: str
    body: str


class TicketResolved(Event):
    """Support staff resolved the ticket."""

    event_type = "ticket_resolved"
    ticket_id: str
    actor_id: str
    actor_role: str
    resolution: str


class TicketReopened(Event):
    """The owner or support staff reopened a resolved ticket."""

    event_type = "ticket_reopened"
    ticket_id: str
    actor_id: str
    actor_role: str


class TicketChanged(Event):
    """What a ticket event changed, for the support feed (queues, SLA figures, dashboard)."""

    event_type = "ticket_changed"
    change: str  # opened, commented, assigned, resolved, reopened
    ticket_id: str
    user_id: str
    subject: str
    status: str
    opened_at: str
    open_since: str
    actor_id: str
    actor_role: str
    assignee: str = ""
    previous_assignee: str = ""
    order_id: str | None = None
    first_response_at: str | None = None
    resolved_at: str | None = None
    comments: int = 0
    #: Set when this change was the first response / a resolution: the time it took.
    first_response_s: float | None = None
    resolution_s: float | None = None


#: Any event on the support topic.
TicketEvent = TicketOpened | TicketAssigned | TicketCommented | TicketResolved | TicketReopened

#: Events on the support topic, by type.
SUPPORT_EVENTS = event_types(TicketOpened, TicketAssigned, TicketCommented, TicketResolved,
                             TicketReopened)


def role_of(roles: frozenset[str] | set[str]) -> str:
    """Return the role a caller acts in: admin, else support, else customer."""
    return next((role for role in ("admin", "support") if role in roles), "customer")


@dataclass(frozen=True, slots=True)
class Comment:
    """One comment on a ticket."""

    id: str
    author_id: str
    author_role: str
    body: str
    at: str


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of a ticket's history: what happened, when, by whom, from which event."""

    action: str
    at: str
    by: str
    role: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket as the tickets table keeps it."""

    id: str
    user_id: str
    subject: str
    body: str
    order_id: str | None
    status: str
    opened_at: str
    open_since: str
    assignee: str | None = None
    first_response_at: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None
    comments: tuple[Comment, ...] = ()
    history: tuple[Step, ...] = ()
    #: The fingerprint of the request that opened it, to tell a retry from a reused key.
    request_digest: str = ""

    @property
    def event_ids(self) -> frozenset[str]:
        """Return the ids of the events this ticket has absorbed."""
        return frozenset(step.event_id for step in self.history)

    def to_row(self) -> dict[str, Any]:
        """Return the table row (the API's ticket document once ``_`` keys are dropped)."""
        return {
            "id": self.id, "user_id": self.user_id, "subject": self.subject,
            "body": self.body, "order_id": self.order_id, "status": self.status,
            "opened_at": self.opened_at, "open_since": self.open_since,
            "assignee": self.assignee, "first_response_at": self.first_response_at,
            "resolved_at": self.resolved_at, "resolution": self.resolution,
            "comments": [{"id": c.id, "author_id": c.author_id, "author_role": c.author_role,
                          "body": c.body, "at": c.at} for c in self.comments],
            "history": [{"action": s.action, "at": s.at, "by": s.by, "role": s.role,
                         "event_id": s.event_id} for s in self.history],
            "_request_digest": self.request_digest,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Ticket:
        """Return the ticket kept in ``row``."""
        return cls(
            row["id"], row["user_id"], row["subject"], row["body"], row["order_id"],
            row["status"], row["opened_at"], row["open_since"], row["assignee"],
            row["first_response_at"], row["resolved_at"], row["resolution"],
            tuple(Comment(c["id"], c["author_id"], c["author_role"], c["body"], c["at"])
                  for c in row["comments"]),
            tuple(Step(s["action"], s["at"], s["by"], s["role"], s["event_id"])
                  for s in row["history"]),
            row.get("_request_digest", ""),
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an action is not allowed: ``forbidden`` (the role) or ``conflict`` (the state)."""

    kind: str
    message: str


def may_see_ticket(ticket: Ticket, actor_id: str, role: str) -> bool:
    """Return True if the actor may see the ticket (its owner or support staff)."""
    return role in STAFF or ticket.user_id == actor_id


def refusal(ticket: Ticket, action: str, actor_id: str, role: str,
            assignee: str | None = None) -> Refusal | None:
    """Return why ``action`` (comment, assign, resolve, reopen) is refused now, or None.

    The caller has already been checked with :func:`may_see_ticket`.
    """
    if action in ("assign", "resolve") and role not in STAFF:
        return Refusal("forbidden", f"only support staff may {action} a ticket")
    if action == "reopen":
        if ticket.status != RESOLVED:
            return Refusal("conflict", f"only a resolved ticket can be reopened; this one is "
                                       f"{ticket.status}")
        return None
    if ticket.status == RESOLVED:
        return Refusal("conflict", f"the ticket is resolved; reopen it to {action} it")
    if action == "assign" and ticket.status == ASSIGNED and ticket.assignee == assignee:
        return Refusal("conflict", f"the ticket is already assigned to {assignee}")
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """The ticket after an event (None: still unknown) and the effects to send."""

    ticket: Ticket | None
    effects: list[Effect] = field(default_factory=list)


_ACTIONS: dict[type[Event], str] = {TicketAssigned: "assign", TicketCommented: "comment",
                                    TicketResolved: "resolve", TicketReopened: "reopen"}


def decide(ticket: Ticket | None, event: Event) -> Decision:
    """Return the ticket after ``event`` and what it causes (nothing if it is refused)."""
    if isinstance(event, TicketOpened):
        if ticket is not None:
            return Decision(ticket)  # opened twice (a retried request): once is enough
        at = event.occurred_at.isoformat()
        opened = Ticket(event.ticket_id, event.actor_id, event.subject, event.body,
                        event.order_id, OPEN, at, at,
                        history=(_step(event, "opened"),), request_digest=event.request_digest)
        return Decision(opened, [_changed(opened, "opened", event)])
    action = _ACTIONS.get(type(event))
    if ticket is None or action is None or event.event_id in ticket.event_ids:
        return Decision(ticket)
    event = cast(TicketEvent, event)
    actor_id, role = event.actor_id, event.actor_role
    if not may_see_ticket(ticket, actor_id, role) or refusal(
            ticket, action, actor_id, role, getattr(event, "assignee", None)):
        return Decision(ticket)
    at = _not_before(event.occurred_at, ticket.opened_at)
    done = replace(ticket, history=(*ticket.history, _step(event, action, at)))
    if isinstance(event, TicketCommented):
        comment = Comment(event.event_id, actor_id, role, event.body, at)
        done = replace(done, comments=(*done.comments, comment))
        first = role in STAFF and actor_id != ticket.user_id and not ticket.first_response_at
        if first:
            done = replace(done, first_response_at=at)
            return Decision(done, [_changed(done, "commented", event,
                                            first_response_s=_seconds(ticket.opened_at, at))])
        return Decision(done, [_changed(done, "commented", event)])
    if isinstance(event, TicketAssigned):
        done = replace(done, status=ASSIGNED, assignee=event.assignee)
        return Decision(done, [_changed(done, "assigned", event,
                                        previous_assignee=ticket.assignee or "")])
    if isinstance(event, TicketResolved):
        done = replace(done, status=RESOLVED, resolved_at=at, resolution=event.resolution)
        return Decision(done, [_changed(done, "resolved", event,
                                        resolution_s=_seconds(ticket.open_since, at))])
    done = replace(done, status=REOPENED, open_since=at, resolved_at=None, resolution=None)
    return Decision(done, [_changed(done, "reopened", event)])


def _step(event: TicketEvent, action: str, at: str | None = None) -> Step:
    return Step(action, at or event.occurred_at.isoformat(), event.actor_id, event.actor_role,
                event.event_id)


def _not_before(at: datetime, earliest: str) -> str:
    """Return ``at`` as ISO text, but never before ``earliest`` (clocks of workers differ)."""
    return max(at, datetime.fromisoformat(earliest)).isoformat()


def _seconds(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start))
               .total_seconds())


def _changed(ticket: Ticket, change: str, event: TicketEvent, **extra: Any) -> Effect:
    """Return the ``TicketChanged`` for the support feed (its id derives from the cause)."""
    changed = TicketChanged(
        type=TicketChanged.event_type, event_id=f"{event.event_id}-changed",
        occurred_at=datetime.fromisoformat(ticket.history[-1].at),
        correlation_id=event.correlation_id, change=change, ticket_id=ticket.id,
        user_id=ticket.user_id, subject=ticket.subject, status=ticket.status,
        opened_at=ticket.opened_at, open_since=ticket.open_since,
        actor_id=event.actor_id, actor_role=event.actor_role,
        assignee=ticket.assignee or "", order_id=ticket.order_id,
        first_response_at=ticket.first_response_at, resolved_at=ticket.resolved_at,
        comments=len(ticket.comments), **extra)
    return Effect("support-feed", ticket.id, changed)
