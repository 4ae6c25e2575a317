"""Support tables: tickets by id, and the board (index, queues, SLA, live feed).

``tickets`` is partitioned like the ``support`` topic (by ticket id) and written only by the
support agent; a ticket is read and changed on the worker that owns it. The board tables
have one partition: the board agent, the only consumer of the one-partition ``support-feed``
topic, is their single writer, so it sees every ticket change of the shop in order:

- ``ticket_index``: ticket id -> summary, for listing (by owner, status, assignee);
- ``support_queues``: assignee (or ``(unassigned)``) -> the open tickets in their queue;
- ``support_board``: ``"sla"`` -> running aggregates and the open tickets with their age.

Reads of those go to the board's worker (``ShopRouter.on_owner``). ``support_dashboard``
is every worker's copy of what the live feed needs (a global table): ``"sla"``, ``"head"``
(the number of the newest feed entry) and ``"feed:<n % FEED_RING>"`` (the entries).
"""

from __future__ import annotations

from typing import Any

from app import app
from tables.orders import OrderWatchers

__all__ = [
    "FEED_RING",
    "feed_entries",
    "support_board",
    "support_dashboard",
    "support_queues",
    "ticket_index",
    "ticket_watchers",
    "tickets",
]

#: How many feed entries every worker keeps (a stream that falls further behind resyncs).
FEED_RING = 256

#: ticket id -> models.support.Ticket row (comments and history included)
tickets = app.Table("support-tickets", key_type=str, help="Every support ticket.")

#: ticket id -> summary (models.support_board.index_entry), on the board's worker
ticket_index = app.Table("support-index", key_type=str, partitions=1,
                         help="A summary of every ticket, for lists (single writer).")

#: assignee -> {assignee, tickets: {ticket id: {subject, status, open_since}}}
support_queues = app.Table("support-queues", key_type=str, partitions=1,
                           help="The open tickets in each assignee's queue.")

#: "sla" -> {first_response, resolution, breaches, open: {ticket id: {...}}}
support_board = app.Table("support-board", key_type=str, partitions=1,
                          help="SLA running aggregates and the open tickets (single writer).")

#: "sla", "head", "feed:<n>" -> the board as every worker reads it (may lag a little)
support_dashboard = app.GlobalTable("support-dashboard", key_type=str, partitions=1,
                                    recovery_buffer_size=1,
                                    help="The support dashboard's figures and live feed.")

#: Requests waiting for a ticket to change (woken by the support agent).
ticket_watchers = OrderWatchers()


def feed_entries(after: int) -> tuple[list[dict[str, Any]], int]:
    """Return this worker's feed entries numbered above ``after`` (oldest first), and the head.

    Entries that left the ring are skipped; an entry not here yet ends the list.
    """
    head = int((support_dashboard.get("head") or {}).get("seq", -1))
    found: list[dict[str, Any]] = []
    for seq in range(max(after + 1, head - FEED_RING + 1), head + 1):
        entry = support_dashboard.get(f"feed:{seq % FEED_RING}")
        if entry is None or entry.get("seq") != seq:
            break
        found.append(entry)
    return found, head
