"""Analytics tables: activity per browsing session."""

from __future__ import annotations

from typing import Any

from app import app

__all__ = ["public_view", "session_activity"]

#: session id -> {session_id, user_id, events, counts{type: n}, first_seen, last_seen, _applied}
session_activity = app.Table(
    "session-activity",
    key_type=str,
    help="Activity per browsing session, from the analytics topic.",
)


def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """Return a row without its bookkeeping fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
