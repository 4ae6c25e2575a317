"""models/support.py: the ticket state machine, who may do what, first response, resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import Event, decode_event, new_event_id
from models.support import (
    SUPPORT_EVENTS,
    Ticket,
    TicketAssigned,
    TicketChanged,
    TicketCommented,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    decide,
    may_see_ticket,
    refusal,
    role_of,
)

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
OWNER, OTHER, AGENT, ADMIN = "cust-1", "cust-2", "agent-1", "admin-1"
E = TypeVar("E", bound=Event)
ROLES = {OWNER: "customer", OTHER: "customer", AGENT: "support", ADMIN: "admin"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(cls: type[E], when: datetime, **fields: Any) -> E:
    return cls(type=cls.event_type, event_id=new_event_id(), occurred_at=when, **fields)


def opened(order_id: str | None = None) -> TicketOpened:
    return ev(TicketOpened, T0, ticket_id="t1", actor_id=OWNER, actor_role="customer",
                            subject="Where is my parcel?", body="It has been a week.",
                            order_id=order_id, correlation_id="req-1")


def make(kind: str, actor: str, minutes: float, **fields: Any) -> Event:
    common = {"ticket_id": "t1", "actor_id": actor, "actor_role": ROLES[actor]}
    when = at(minutes)
    if kind == "comment":
        return ev(TicketCommented, when, body=fields.get("body", "hello"), **common)
    if kind == "assign":
        return ev(TicketAssigned, when, assignee=fields.get("assignee", AGENT), **common)
    if kind == "resolve":
        return ev(TicketResolved, when, resolution=fields.get("resolution", "refunded"),
                  **common)
    return ev(TicketReopened, when, **common)


def run(*events: Event) -> tuple[Ticket, list[TicketChanged]]:
    ticket: Ticket | None = None
    changes: list[TicketChanged] = []
    for event in events:
        decision = decide(ticket, event)
        ticket = decision.ticket
        changes.extend(e.event for e in decision.effects)  # type: ignore[misc]
    assert ticket is not None
    return ticket, changes


def test_opening_makes_an_open_ticket_and_tells_the_feed() -> None:
    ticket, changes = run(opened("order-9"))
    assert (ticket.status, ticket.user_id, ticket.order_id) == ("open", OWNER, "order-9")
    assert [c.change for c in changes] == ["opened"]
    assert changes[0].correlation_id == "req-1"
    assert changes[0].event_id.endswith("-changed")


def test_the_whole_lifecycle_with_first_response_and_resolution_times() -> None:
    ticket, changes = run(opened(), make("comment", OWNER, 1), make("assign", AGENT, 5),
                          make("comment", AGENT, 20), make("comment", AGENT, 25),
                          make("resolve", AGENT, 60), make("reopen", OWNER, 70),
                          make("resolve", ADMIN, 100))
    assert ticket.status == "resolved" and ticket.assignee == AGENT
    assert ticket.first_response_at == at(20).isoformat()
    assert [c.change for c in changes] == ["opened", "commented", "assigned", "commented",
                                           "commented", "resolved", "reopened", "resolved"]
    assert [c.first_response_s for c in changes if c.first_response_s is not None] == [1200.0]
    # Resolution time runs from the latest (re)open.
    assert [c.resolution_s for c in changes if c.resolution_s is not None] == [3600.0, 1800.0]
    assert len(ticket.comments) == 3 and len(ticket.history) == 8


def test_a_customer_may_not_assign_or_resolve_and_others_may_not_touch() -> None:
    ticket, _ = run(opened())
    assert refusal(ticket, "assign", OWNER, "customer", "x") is not None
    assert refusal(ticket, "resolve", OWNER, "customer").kind == "forbidden"  # type: ignore[union-attr]
    assert not may_see_ticket(ticket, OTHER, "customer")
    assert may_see_ticket(ticket, AGENT, "support") and may_see_ticket(ticket, OWNER, "customer")
    # The rules hold in the machine too: a request that raced past a view changes nothing.
    for event in (make("assign", OWNER, 1), make("resolve", OWNER, 1),
                  make("comment", OTHER, 1), make("reopen", OTHER, 1)):
        assert decide(ticket, event).ticket == ticket


def test_only_a_resolved_ticket_can_be_reopened_and_a_resolved_one_takes_no_comments() -> None:
    ticket, _ = run(opened())
    assert refusal(ticket, "reopen", OWNER, "customer").kind == "conflict"  # type: ignore[union-attr]
    resolved, _ = run(opened(), make("resolve", AGENT, 3))
    assert refusal(resolved, "comment", OWNER, "customer") is not None
    assert refusal(resolved, "reopen", OWNER, "customer") is None
    assigned, _ = run(opened(), make("assign", AGENT, 3))
    assert refusal(assigned, "assign", AGENT, "support", AGENT).kind == "conflict"  # type: ignore[union-attr]


def test_the_owners_own_comment_is_no_first_response() -> None:
    ticket, _ = run(opened(), make("comment", OWNER, 3))
    assert ticket.first_response_at is None


def test_rows_round_trip_and_events_decode() -> None:
    ticket, changes = run(opened(), make("assign", AGENT, 1), make("comment", AGENT, 2))
    assert Ticket.from_row(ticket.to_row()) == ticket
    for event in (opened(), make("assign", AGENT, 1), make("resolve", AGENT, 2)):
        assert decode_event(SUPPORT_EVENTS, event.dumps()) == event
    assert decode_event(TicketChanged, changes[-1].dumps()) == changes[-1]


def test_role_of_prefers_admin_then_support() -> None:
    assert role_of({"customer", "admin"}) == "admin"
    assert role_of({"support"}) == "support"
    assert role_of(set()) == "customer"


def check_invariants(ticket: Ticket) -> None:
    assert ticket.status in {"open", "assigned", "resolved", "reopened"}
    resolved = ticket.status == "resolved"
    assert resolved == (ticket.resolved_at is not None) == (ticket.resolution is not None)
    assert ticket.status != "assigned" or ticket.assignee
    opened_at = datetime.fromisoformat(ticket.opened_at)
    assert datetime.fromisoformat(ticket.open_since) >= opened_at
    if ticket.first_response_at:
        assert datetime.fromisoformat(ticket.first_response_at) >= opened_at
    ids = [step.event_id for step in ticket.history]
    assert len(ids) == len(set(ids))
    assert len({c.id for c in ticket.comments}) == len(ticket.comments)
    for comment in ticket.comments:
        assert comment.author_id == ticket.user_id or comment.author_role in ("support", "admin")


actions = st.lists(st.tuples(
    st.sampled_from(["comment", "assign", "resolve", "reopen", "replay"]),
    st.sampled_from([OWNER, OTHER, AGENT, ADMIN]),
    st.floats(min_value=-5, max_value=600, allow_nan=False),
    st.integers(min_value=0, max_value=50)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(actions)
def test_any_sequence_keeps_the_invariants_and_a_replay_changes_nothing(
        steps: list[tuple[str, str, float, int]]) -> None:
    first = opened()
    ticket, _ = run(first)
    applied: list[Event] = [first]
    first_response = None
    for kind, actor, minutes, pick in steps:
        if kind == "replay":
            event = applied[pick % len(applied)]
            again = decide(ticket, event)
            assert again.ticket == ticket and again.effects == []
            continue
        event = make(kind, actor, minutes, assignee=[AGENT, ADMIN][pick % 2])
        decision = decide(ticket, event)
        assert decision.ticket is not None
        if decision.ticket != ticket:
            applied.append(event)
            assert len(decision.effects) == 1
        else:
            assert decision.effects == []
        ticket = decision.ticket
        check_invariants(ticket)
        if first_response is not None:
            assert ticket.first_response_at == first_response  # set once, never moved
        first_response = ticket.first_response_at
