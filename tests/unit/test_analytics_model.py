"""models/analytics.py: the Tracked event and the activity a session's events add up to."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.analytics import TRACKING_TYPES, Tracked, add_activity
from models.base import EventDecodeError, decode_event

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def tracked(type: str = "page_view", *, at: datetime = T0, session_id: str = "sess-0001",
            user_id: str | None = None, event_id: str = "e1") -> Tracked:
    return Tracked(type=type, event_id=event_id, occurred_at=at, session_id=session_id,
                   user_id=user_id)


def as_json(**overrides: Any) -> bytes:
    data = {"type": "page_view", "event_id": "e1", "occurred_at": "2024-05-01T10:00:00+00:00",
            "session_id": "sess-0001", **overrides}
    return json.dumps(data).encode()


tracked_events = st.builds(
    tracked,
    type=st.sampled_from(TRACKING_TYPES),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
    user_id=st.none() | st.sampled_from(["u1", "u2"]),
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(tracked_events, min_size=1, max_size=30))
def test_activity_adds_up_whatever_the_order(events: list[Tracked]) -> None:
    activity: dict[str, Any] | None = None
    for event in events:
        activity = add_activity(activity, event)
    assert activity is not None

    assert activity["events"] == len(events) == sum(activity["counts"].values())
    assert activity["counts"] == {t: n for t in TRACKING_TYPES
                                  if (n := sum(e.type == t for e in events))}
    first = datetime.fromisoformat(activity["first_seen"])
    last = datetime.fromisoformat(activity["last_seen"])
    assert first <= last
    assert first == min(e.occurred_at for e in events)
    assert last == max(e.occurred_at for e in events)
    known_users = [e.user_id for e in events if e.user_id]
    assert activity["user_id"] == (known_users[-1] if known_users else None)


def test_activity_keeps_the_fields_it_does_not_own() -> None:
    row = {"_applied": {"offsets": {"analytics": 3}, "ids": ["e0"]}, "note": "x"}
    activity = add_activity(row, tracked("search", user_id="u1"))
    assert activity["_applied"] == row["_applied"]
    assert activity["note"] == "x"
    assert row == {"_applied": {"offsets": {"analytics": 3}, "ids": ["e0"]}, "note": "x"}


def test_a_first_event_starts_the_activity() -> None:
    assert add_activity(None, tracked("add_to_cart", user_id="u7")) == {
        "session_id": "sess-0001",
        "user_id": "u7",
        "events": 1,
        "counts": {"add_to_cart": 1},
        "first_seen": T0.isoformat(),
        "last_seen": T0.isoformat(),
    }


def test_first_and_last_seen_follow_time_not_text_across_utc_offsets() -> None:
    plus_two = timezone(timedelta(hours=2))
    early = tracked(at=datetime(2024, 5, 1, 10, 0, tzinfo=plus_two))  # 08:00 UTC
    late = tracked(at=datetime(2024, 5, 1, 9, 0, tzinfo=UTC))  # 09:00 UTC
    activity = add_activity(add_activity(None, early), late)
    assert datetime.fromisoformat(activity["first_seen"]) == early.occurred_at
    assert datetime.fromisoformat(activity["last_seen"]) == late.occurred_at


def test_every_tracking_type_is_accepted() -> None:
    for type_ in TRACKING_TYPES:
        assert decode_event(Tracked, as_json(type=type_)).type == type_


def test_an_unknown_type_is_a_decode_error_that_lists_the_known_ones() -> None:
    with pytest.raises(EventDecodeError, match="type must be one of page_view") as caught:
        decode_event(Tracked, as_json(type="purchase"))
    assert "'purchase'" in str(caught.value)


def test_an_empty_session_id_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="session_id must not be empty"):
        decode_event(Tracked, as_json(session_id=""))


def test_tracked_refuses_bad_values_when_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="type must be one of"):
        tracked("purchase")
    with pytest.raises(ValueError, match="session_id"):
        tracked(session_id="")
