"""Analytics agent: adds each tracked behaviour to its session's activity."""

from __future__ import annotations

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.topics import analytics_topic
from app import app
from models.analytics import Tracked, add_activity
from tables.analytics import session_activity
from tables.replay import Position, update_once

__all__ = ["record_session_activity"]


async def apply_tracked(event: Tracked, position: Position) -> None:
    """Count ``event`` in its session's activity, once, however often it is delivered."""
    update_once(session_activity, event.session_id, position,
                lambda row: add_activity(row, event))


@app.agent(analytics_topic, name="analytics.session-activity")
async def record_session_activity(stream: StreamT[bytes]) -> None:
    """Consume the analytics topic into the session-activity table."""
    await for_each_event(stream, Tracked, apply_tracked, agent="analytics.session-activity")
