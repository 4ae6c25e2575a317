"""Analytics HTTP: the tracking endpoint and the activity of a session.

``POST /api/events`` takes a batch of tracked behaviours from the storefront and puts them on
the ``analytics`` topic, in the partition of its session, packed with other requests' events
(agents/tracking.py); ``GET /api/analytics/sessions/{session_id}`` reads
the session's activity from the worker that owns its partition (``app.table_route``).
"""

from __future__ import annotations

from datetime import UTC
from typing import Literal

from faust.web import Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from agents.tracking import collector
from models.analytics import Tracked
from models.base import new_event_id, utcnow
from tables.analytics import public_view, session_activity
from web.bodies import read_body
from web.errors import NotFound
from web.identity import identity, require
from web.middleware import request_id
from web.openapi import endpoint
from web.routing import route_to_owner
from web.views import ShopView

__all__ = ["TrackingAccepted", "TrackingBatch"]


# -- Answers -------------------------------------------------------------------------------


class TrackingAccepted(BaseModel):
    """How many tracked behaviours went to the analytics topic."""

    accepted: int


MAX_BATCH = 100


class TrackedIn(BaseModel):
    """One behaviour as the storefront reports it."""

    type: Literal["page_view", "product_view", "search", "add_to_cart", "remove_from_cart"]
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    query: str | None = Field(default=None, min_length=1, max_length=200)
    path: str | None = Field(default=None, min_length=1, max_length=500)
    at: AwareDatetime | None = None


class TrackingBatch(BaseModel):
    """A batch of behaviours of one browsing session."""

    session_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    events: list[TrackedIn] = Field(min_length=1, max_length=MAX_BATCH)


@endpoint("POST", "/api/events", body=TrackingBatch, status=202, response=TrackingAccepted)
class TrackingView(ShopView):
    """Accept tracked behaviours (202) once they are on the analytics topic."""

    async def post(self, request: Request) -> Response:
        batch = await read_body(request, TrackingBatch)
        user_id = identity(request).user_id or None  # signed in: the events are the user's
        correlation_id = request_id(request)
        now = utcnow()
        events = [
            Tracked(
                type=item.type,
                event_id=new_event_id(),
                occurred_at=min(item.at or now, now).astimezone(UTC),
                correlation_id=correlation_id,
                session_id=batch.session_id,
                user_id=user_id,
                sku=item.sku,
                query=item.query,
                path=item.path,
            ).dumps()
            for item in batch.events
        ]
        await collector.send(batch.session_id, events)
        return self.json({"accepted": len(events)}, status=202)


@endpoint("GET", "/api/analytics/sessions/{session_id}", roles=("admin",), errors=(503,))
class SessionActivityView(ShopView):
    """The activity of one browsing session (admin)."""

    @route_to_owner(session_activity, match_info="session_id")
    async def get(self, request: Request, session_id: str) -> Response:
        require(request, "admin")
        row = session_activity.get(session_id)
        if row is None:
            raise NotFound(f"no activity for session {session_id!r}")
        return self.json(public_view(row))
