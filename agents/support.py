"""Support agents: the tickets, and the board every support dashboard reads.

``support.tickets`` consumes ``support`` [ticket id] into the tickets table through the
pure state machine (models/support.py) and sends each change, as ``TicketChanged``, to the
one-partition ``support-feed`` topic. ``support.board`` consumes that topic: being one
partition, it runs on one worker and sees every change of every ticket in order, so it is
the single writer of what spans tickets — the ticket index, the per-assignee queues and the
SLA figures (tables/support.py; the queues could also be keyed through a topic by assignee,
but support traffic is human-sized and one writer keeps index, queues and figures
consistent with each other).

The live feed must reach every worker's SSE streams, while an agent on a one-partition topic
runs on one worker only. So the board agent also writes each feed entry (numbered by its
offset on ``support-feed``) and the figures to a global table, ``support_dashboard``: every
worker consumes its changelog, and web/support_stream.py polls this worker's copy. That
keeps the feed complete with no consumer of our own, and restarts recover it with the table.

A timer on the board's worker sends ``SlaBreached`` for tickets that have waited for a first
response longer than SHOP_SUPPORT_FIRST_RESPONSE_TARGET (once: the board marks them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from faust.types import TP, StreamT

from agents.dead_letters import for_each_event
from agents.sending import TOPICS, to_sends
from agents.topics import shop_topic, support_topic
from app import app
from models.base import event_types, utcnow
from models.support import SUPPORT_EVENTS, Ticket, TicketChanged, decide
from models.support_board import (
    SlaBreached,
    feed_item,
    index_entry,
    mark_breached,
    overdue,
    queue_after,
    queue_key,
    sla_after,
)
from runtime.tables import tables_ready
from tables.replay import Position, Send, decide_once, update_once
from tables.support import (
    FEED_RING,
    support_board,
    support_dashboard,
    support_queues,
    ticket_index,
    ticket_watchers,
    tickets,
)

__all__ = ["keep_support_board", "keep_tickets", "support_feed_topic", "watch_first_responses"]

#: support-feed [ticket id], one partition: TicketChanged, SlaBreached (the board's input).
support_feed_topic = shop_topic("support-feed", partitions=1)

#: Events on the support feed, by type.
FEED_EVENTS = event_types(TicketChanged, SlaBreached)

Row = dict[str, Any]

#: How often the board's worker looks for tickets past the first-response target (s).
BREACH_CHECK_S = 1.0


async def send_support(sends: list[Send]) -> None:
    """Send each message to its topic (the support feed is declared here, not in TOPICS)."""
    for topic, key, value in sends:
        target = support_feed_topic if topic == "support-feed" else TOPICS[topic]
        await target.send(key=key, value=value.encode())


async def apply_ticket_event(event: Any, position: Position) -> None:
    """Move the ticket ``event`` is about, once, and send the change to the feed."""
    ticket_id: str = event.ticket_id

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        decision = decide(Ticket.from_row(row) if row else None, event)
        return (decision.ticket.to_row() if decision.ticket else None,
                to_sends(decision.effects))

    sends = decide_once(tickets, ticket_id, position, step)
    row = tickets.get(ticket_id)
    if row is not None:
        ticket_watchers.changed(ticket_id, row)
    await send_support(sends)


@app.agent(support_topic, name="support.tickets")
async def keep_tickets(stream: StreamT[bytes]) -> None:
    """Consume the support topic into the tickets table."""
    await for_each_event(stream, SUPPORT_EVENTS, apply_ticket_event, agent="support.tickets")


async def apply_board_event(event: TicketChanged | SlaBreached, position: Position) -> None:
    """Apply one ticket change or breach to the index, queues and SLA, once; publish it."""
    ticket_id = event.ticket_id
    if isinstance(event, TicketChanged):
        before = ticket_index.get(ticket_id) or {}
        update_once(ticket_index, ticket_id, position, lambda row: index_entry(row, event))
        queues = {queue_key(before.get("assignee")), queue_key(event.previous_assignee),
                  queue_key(event.assignee)}
        for key in sorted(queues):
            update_once(support_queues, key, position, _queue_update(key, event))
    elif isinstance(event, SlaBreached):
        if ticket_index.get(ticket_id) is None:
            return
        update_once(ticket_index, ticket_id, position, mark_breached)
    update_once(support_board, "sla", position, lambda row: sla_after(row, event))
    sla = {k: v for k, v in (support_board.get("sla") or {}).items() if k != "_applied"}
    support_dashboard["sla"] = sla
    seq = position.offset
    support_dashboard[f"feed:{seq % FEED_RING}"] = feed_item(
        event, seq, ticket_index.get(ticket_id), sla)
    if int((support_dashboard.get("head") or {}).get("seq", -1)) < seq:
        support_dashboard["head"] = {"seq": seq}


def _queue_update(key: str, event: TicketChanged) -> Callable[[Row | None], Row]:
    """Return the update of queue ``key`` for ``event``."""
    return lambda row: queue_after(row, key, event)


@app.agent(support_feed_topic, name="support.board")
async def keep_support_board(stream: StreamT[bytes]) -> None:
    """Consume the support feed into the board tables and every worker's dashboard."""
    await for_each_event(stream, FEED_EVENTS, apply_board_event, agent="support.board")


def owns_board() -> bool:
    """Return True if this worker writes the board (it has its one partition)."""
    topic = support_board.changelog_topic.get_topic_name()
    return TP(topic, 0) in app.assignor.assigned_actives()


#: Tickets announced as breaching (ticket id -> monotonic time): once until the board knows.
_announced: dict[str, float] = {}


@app.timer(interval=BREACH_CHECK_S)
async def watch_first_responses() -> None:
    """Send SlaBreached for open tickets past the first-response target (board's worker)."""
    if not tables_ready(app) or not owns_board():
        return
    clock = time.monotonic()
    target = app.settings.support_first_response_target
    for ticket_id, waited in overdue(support_board.get("sla"), utcnow(), target):
        if clock - _announced.get(ticket_id, -60.0) < 30.0:
            continue
        _announced[ticket_id] = clock
        breach = SlaBreached.new(ticket_id=ticket_id, waited_s=waited, target_s=target,
                                 correlation_id=ticket_id)
        await support_feed_topic.send(key=ticket_id, value=breach.dumps())
    for old in [k for k, at in _announced.items() if clock - at > 300.0]:
        del _announced[old]
