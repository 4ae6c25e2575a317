"""Tracked-shaped analytics events (about 180 bytes of JSON), keyed by session id."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

__all__ = ["SESSIONS", "TRACKING_TYPES", "make_events", "session_id"]

#: Distinct browsing sessions the events are spread over (the message keys).
SESSIONS = 2_000

#: The behaviours of models.analytics.TRACKING_TYPES (copied: the bench must not import the app).
TRACKING_TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart")

_BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def session_id(number: int) -> str:
    """Return the id of session ``number`` (valid for the shop's tracking API)."""
    return f"sess-{number:05d}"


def make_events(count: int, *, sessions: int = SESSIONS, seed: int = 1) -> list[tuple[str, bytes]]:
    """Return ``count`` ``(session id, JSON bytes)`` pairs, valid ``Tracked`` events."""
    rng = random.Random(seed)
    events: list[tuple[str, bytes]] = []
    for i in range(count):
        session = session_id(i % sessions)
        kind = TRACKING_TYPES[rng.randrange(len(TRACKING_TYPES))]
        sku = f"SKU-{rng.randrange(10_000):05d}"
        event: dict[str, object] = {
            "type": kind,
            "event_id": f"{rng.getrandbits(64):016x}",
            "occurred_at": (_BASE_TIME + timedelta(seconds=i)).strftime(_ISO_UTC),
            "correlation_id": f"{rng.getrandbits(32):08x}",
            "schema_version": 1,
            "session_id": session,
        }
        if kind == "search":
            event["query"] = f"shoes size {rng.randrange(36, 47)}"
        else:
            event["sku"] = sku
        events.append((session, json.dumps(event, separators=(",", ":")).encode()))
    return events
