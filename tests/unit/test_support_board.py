"""models/support_board.py: index, queues, SLA aggregates, age buckets, breaches, feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from models.base import new_event_id
from models.support import TicketChanged
from models.support_board import (
    UNASSIGNED,
    SlaBreached,
    feed_item,
    index_entry,
    overdue,
    queue_after,
    sla_after,
    sla_figures,
    workload,
)

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def changed(ticket_id: str, change: str, status: str, minutes: float = 0,
            **fields: Any) -> TicketChanged:
    return TicketChanged(
        type="ticket_changed", event_id=new_event_id(),
        occurred_at=T0 + timedelta(minutes=minutes), change=change, ticket_id=ticket_id,
        user_id="cust-1", subject="Help", status=status, opened_at=T0.isoformat(),
        open_since=T0.isoformat(), actor_id="agent-1", actor_role="support", **fields)


def test_queues_follow_the_assignee_and_drop_resolved_tickets() -> None:
    new = changed("t1", "opened", "open")
    unassigned = queue_after(None, UNASSIGNED, new)
    assert set(unassigned["tickets"]) == {"t1"}
    assigned = changed("t1", "assigned", "assigned", assignee="agent-1")
    assert queue_after(unassigned, UNASSIGNED, assigned)["tickets"] == {}
    theirs = queue_after(None, "agent-1", assigned)
    assert set(theirs["tickets"]) == {"t1"}
    resolved = changed("t1", "resolved", "resolved", assignee="agent-1")
    assert queue_after(theirs, "agent-1", resolved)["tickets"] == {}


def test_sla_aggregates_age_buckets_workload_and_breaches() -> None:
    sla = None
    for ticket_id in ("t1", "t2", "t3"):
        sla = sla_after(sla, changed(ticket_id, "opened", "open"))
    sla = sla_after(sla, changed("t1", "assigned", "assigned", assignee="agent-1"))
    sla = sla_after(sla, changed("t1", "commented", "assigned", 10, assignee="agent-1",
                                 first_response_at=T0.isoformat(), first_response_s=600.0))
    sla = sla_after(sla, changed("t1", "resolved", "resolved", 30, assignee="agent-1",
                                 resolution_s=1800.0))
    sla = sla_after(sla, changed("t2", "assigned", "assigned", assignee="agent-1"))
    assert workload(sla) == {UNASSIGNED: 1, "agent-1": 1}
    now = T0 + timedelta(hours=2)
    late = overdue(sla, now, target_s=3600)
    assert sorted(ticket for ticket, _ in late) == ["t2", "t3"]
    breach = SlaBreached.new(ticket_id="t3", waited_s=7200.0, target_s=3600.0)
    sla = sla_after(sla_after(sla, breach), breach)  # twice: counted once
    figures = sla_figures(sla, now, 3600)
    assert figures["breaches"] == 1
    assert figures["first_response"]["count"] == 1
    assert figures["first_response"]["median_s"] == 600.0
    assert figures["resolution"]["mean_s"] == 1800.0
    assert figures["open"] == 2 and figures["open_by_age"]["1h_to_4h"] == 2
    assert figures["breaching_now"] == 2
    assert [t for t, _ in overdue(sla, now, 3600)] == ["t2"]


def test_the_index_keeps_the_breach_mark_and_the_feed_names_the_change() -> None:
    entry = index_entry({"breached": True}, changed("t1", "commented", "open"))
    assert entry["breached"] and entry["status"] == "open"
    item = feed_item(changed("t1", "opened", "open"), 7, entry, None)
    assert (item["seq"], item["kind"], item["ticket"]["id"]) == (7, "ticket_opened", "t1")
    breach = SlaBreached.new(ticket_id="t1", waited_s=5.0, target_s=1.0)
    assert feed_item(breach, 8, entry, None)["kind"] == "sla_breach"
