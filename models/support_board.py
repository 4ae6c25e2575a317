"""The support board: ticket index, per-assignee queues, SLA figures and the live feed.

Every ``TicketChanged`` (and every ``SlaBreached``) goes to the one-partition
``support-feed`` topic, so one agent sees every ticket change of the shop in order and is
the single writer of what spans tickets: the index of tickets (for listing), the open
tickets per assignee (queues), and the SLA figures (running aggregates of the time to the
first response and to resolution, the open tickets with their age). The rules here are pure:
rows in, rows out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from statistics import median
from typing import Any

from models.base import Event
from models.support import ACTIVE, TicketChanged

__all__ = [
    "AGE_BUCKETS",
    "UNASSIGNED",
    "SlaBreached",
    "feed_item",
    "index_entry",
    "mark_breached",
    "overdue",
    "queue_after",
    "queue_key",
    "sla_after",
    "sla_figures",
    "workload",
]

#: The queue of tickets nobody is assigned to (assignee ids cannot contain parentheses).
UNASSIGNED = "(unassigned)"
#: Open tickets by age: (bucket name, age under which a ticket is in it, in seconds).
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under_1h", 3600.0), ("1h_to_4h", 4 * 3600.0), ("4h_to_24h", 24 * 3600.0),
    ("over_24h", math.inf))
#: How many recent durations the SLA figures keep for their medians.
RECENT = 100


class SlaBreached(Event):
    """A ticket has waited for its first response longer than the target."""

    event_type = "sla_breached"
    ticket_id: str
    waited_s: float
    target_s: float


def queue_key(assignee: str | None) -> str:
    """Return the queue a ticket of ``assignee`` is in."""
    return assignee or UNASSIGNED


def index_entry(row: Mapping[str, Any] | None, event: TicketChanged) -> dict[str, Any]:
    """Return the ticket's index entry after ``event`` (its summary, for lists)."""
    return {
        "id": event.ticket_id, "user_id": event.user_id, "subject": event.subject,
        "status": event.status, "assignee": event.assignee or None,
        "order_id": event.order_id, "opened_at": event.opened_at,
        "open_since": event.open_since, "first_response_at": event.first_response_at,
        "resolved_at": event.resolved_at, "comments": event.comments,
        "updated_at": event.occurred_at.isoformat(),
        "breached": bool((row or {}).get("breached")),
    }


def mark_breached(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the index entry marked as having missed the first-response target."""
    return {**(row or {}), "breached": True}


def queue_after(row: Mapping[str, Any] | None, key: str,
                event: TicketChanged) -> dict[str, Any]:
    """Return queue ``key`` after ``event``: the ticket is in it while open and theirs."""
    tickets = dict((row or {}).get("tickets", {}))
    if event.status in ACTIVE and queue_key(event.assignee) == key:
        tickets[event.ticket_id] = {"subject": event.subject, "status": event.status,
                                    "open_since": event.open_since}
    else:
        tickets.pop(event.ticket_id, None)
    return {"assignee": key, "tickets": tickets}


def _add(aggregate: Mapping[str, Any] | None, seconds: float) -> dict[str, Any]:
    """Return a running aggregate of durations with ``seconds`` added."""
    agg = dict(aggregate or {"count": 0, "total_s": 0.0, "max_s": 0.0, "recent": []})
    return {"count": agg["count"] + 1, "total_s": agg["total_s"] + seconds,
            "max_s": max(agg["max_s"], seconds), "recent": [*agg["recent"], seconds][-RECENT:]}


def sla_after(row: Mapping[str, Any] | None, event: Event) -> dict[str, Any]:
    """Return the SLA row after a ticket change or a breach."""
    sla: dict[str, Any] = dict(row or {"first_response": None, "resolution": None,
                                       "breaches": 0, "open": {}})
    opened = dict(sla["open"])
    if isinstance(event, SlaBreached):
        entry = opened.get(event.ticket_id)
        if entry is not None and not entry["breached"]:
            opened[event.ticket_id] = {**entry, "breached": True}
            sla["breaches"] += 1
        return {**sla, "open": opened}
    assert isinstance(event, TicketChanged)
    if event.first_response_s is not None:
        sla["first_response"] = _add(sla["first_response"], event.first_response_s)
    if event.resolution_s is not None:
        sla["resolution"] = _add(sla["resolution"], event.resolution_s)
    if event.status in ACTIVE:
        before = opened.get(event.ticket_id) or {}
        opened[event.ticket_id] = {
            "opened_at": event.opened_at, "assignee": event.assignee or None,
            "responded": event.first_response_at is not None,
            "breached": bool(before.get("breached"))}
    else:
        opened.pop(event.ticket_id, None)
    return {**sla, "open": opened}


def workload(sla: Mapping[str, Any] | None) -> dict[str, int]:
    """Return the open tickets per queue (assignee, or UNASSIGNED)."""
    counts: dict[str, int] = {}
    for entry in (sla or {}).get("open", {}).values():
        key = queue_key(entry["assignee"])
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def overdue(sla: Mapping[str, Any] | None, now: datetime,
            target_s: float) -> list[tuple[str, float]]:
    """Return (ticket id, seconds waited) of open tickets past the first-response target."""
    late = []
    for ticket_id, entry in (sla or {}).get("open", {}).items():
        if entry["responded"] or entry["breached"]:
            continue
        waited = (now - datetime.fromisoformat(entry["opened_at"])).total_seconds()
        if waited > target_s:
            late.append((ticket_id, waited))
    return late


def _figures(aggregate: Mapping[str, Any] | None) -> dict[str, Any]:
    if not aggregate or not aggregate["count"]:
        return {"count": 0, "mean_s": None, "median_s": None, "max_s": None}
    return {"count": aggregate["count"], "mean_s": aggregate["total_s"] / aggregate["count"],
            "median_s": median(aggregate["recent"]), "max_s": aggregate["max_s"]}


def sla_figures(sla: Mapping[str, Any] | None, now: datetime,
                target_s: float) -> dict[str, Any]:
    """Return the SLA figures at ``now`` (the API's and the dashboard's document)."""
    opened = (sla or {}).get("open", {})
    buckets = {name: 0 for name, _ in AGE_BUCKETS}
    for entry in opened.values():
        age = (now - datetime.fromisoformat(entry["opened_at"])).total_seconds()
        buckets[next(name for name, under in AGE_BUCKETS if age < under)] += 1
    waiting = [e for e in opened.values() if not e["responded"]]
    return {
        "first_response_target_s": target_s,
        "first_response": _figures((sla or {}).get("first_response")),
        "resolution": _figures((sla or {}).get("resolution")),
        "open": len(opened),
        "open_by_age": buckets,
        "waiting_for_first_response": len(waiting),
        "breaching_now": len(overdue(sla, now, target_s)) + sum(
            1 for e in waiting if e["breached"]),
        "breaches": (sla or {}).get("breaches", 0),
        "workload": workload(sla),
        "at": now.isoformat(),
    }


def feed_item(event: Event, seq: int, ticket: Mapping[str, Any] | None,
              sla: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the dashboard's feed entry for ``event`` (number ``seq``)."""
    if isinstance(event, SlaBreached):
        kind = "sla_breach"
        extra: dict[str, Any] = {"waited_s": event.waited_s, "target_s": event.target_s}
    else:
        assert isinstance(event, TicketChanged)
        kind = f"ticket_{event.change}"
        extra = {"actor": {"id": event.actor_id, "role": event.actor_role}}
        if event.first_response_s is not None:
            extra["first_response_s"] = event.first_response_s
        if event.resolution_s is not None:
            extra["resolution_s"] = event.resolution_s
    summary = {k: v for k, v in (ticket or {}).items() if not k.startswith("_")}
    return {"seq": seq, "kind": kind, "at": event.occurred_at.isoformat(),
            "ticket": summary, "workload": workload(sla), **extra}
