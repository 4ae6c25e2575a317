"""Analytics: tracking events from the storefront and the activity they add up to.

Business rules here are pure functions; the agent in ``agents/analytics.py`` applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from models.base import Event

__all__ = ["TRACKING_TYPES", "Tracked", "add_activity"]

#: The kinds of behaviour the frontend tracks.
TRACKING_TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart")


class Tracked(Event):
    """One tracked behaviour of a browsing session (``type`` is one of TRACKING_TYPES)."""

    session_id: str
    user_id: str | None = None
    sku: str | None = None
    query: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TRACKING_TYPES:
            raise ValueError(f"type must be one of {', '.join(TRACKING_TYPES)}, not {self.type!r}")
        if not self.session_id:
            raise ValueError("session_id must not be empty")


def add_activity(activity: Mapping[str, Any] | None, event: Tracked) -> dict[str, Any]:
    """Return a session's activity with ``event`` counted in."""
    current = dict(activity or {})
    counts = dict(current.get("counts", {}))
    counts[event.type] = counts.get(event.type, 0) + 1
    at = event.occurred_at.astimezone(UTC)
    first_seen = min(_time(current.get("first_seen"), at), at)
    last_seen = max(_time(current.get("last_seen"), at), at)
    return {
        **current,
        "session_id": event.session_id,
        "user_id": event.user_id or current.get("user_id"),
        "events": current.get("events", 0) + 1,
        "counts": counts,
        "first_seen": first_seen.isoformat(),
        "last_seen": last_seen.isoformat(),
    }


def _time(stored: str | None, default: datetime) -> datetime:
    return datetime.fromisoformat(stored) if stored else default
