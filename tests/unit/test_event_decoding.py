"""models/base.py: raw bytes become a validated event, or an EventDecodeError saying why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.analytics import TRACKING_TYPES, Tracked
from models.base import SCHEMA_VERSION, EventDecodeError, decode_event, new_event_id, utcnow

VALID: dict[str, Any] = {
    "type": "page_view",
    "event_id": "4f1c0a",
    "occurred_at": "2024-05-01T10:00:00+00:00",
    "session_id": "sess-0001",
}
REQUIRED = ("type", "event_id", "occurred_at", "session_id")


def encoded(**overrides: Any) -> bytes:
    return json.dumps({**VALID, **overrides}).encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != field}).encode()


def test_a_valid_event_decodes_with_its_defaults() -> None:
    event = decode_event(Tracked, encoded())
    assert event.type == "page_view"
    assert event.session_id == "sess-0001"
    assert event.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert event.correlation_id == ""
    assert event.schema_version == SCHEMA_VERSION
    assert event.user_id is None


def test_str_input_decodes_like_bytes() -> None:
    assert decode_event(Tracked, encoded().decode()) == decode_event(Tracked, encoded())


@pytest.mark.parametrize(("raw", "message"), [
    (None, "empty message value"),
    (b"not json", "not JSON"),
    (b"", "not JSON"),
    (b"\xff\xfe\xfd", "not JSON"),
    (b'{"type": "page_view"', "not JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"page_view"', "expected a JSON object, got str"),
    (b"42", "expected a JSON object, got int"),
    (b"null", "expected a JSON object, got NoneType"),
])
def test_what_is_not_a_json_object_is_refused(raw: bytes | None, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        decode_event(Tracked, raw)


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_field_is_named(field: str) -> None:
    with pytest.raises(EventDecodeError, match=f"^not a valid Tracked: missing {field}$"):
        decode_event(Tracked, without(field))


def test_every_missing_field_is_named_at_once() -> None:
    with pytest.raises(EventDecodeError, match="missing event_id, session_id"):
        decode_event(Tracked, json.dumps({"type": "search", "occurred_at": "2024-05-01T10:00Z"}))


def test_a_time_without_timezone_is_refused() -> None:
    with pytest.raises(EventDecodeError, match="occurred_at must carry a timezone"):
        decode_event(Tracked, encoded(occurred_at="2024-05-01T10:00:00"))


def test_a_blank_event_id_is_refused() -> None:
    with pytest.raises(EventDecodeError, match="event_id must not be empty"):
        decode_event(Tracked, encoded(event_id=""))


@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", 1714557600),
    ("occurred_at", "yesterday"),
    ("occurred_at", [2024, 5, 1]),
    ("occurred_at", True),
    ("schema_version", "one"),
    ("schema_version", [1]),
])
def test_a_value_of_the_wrong_type_is_refused(field: str, value: Any) -> None:
    with pytest.raises(EventDecodeError, match=r"^not a valid Tracked: "):
        decode_event(Tracked, encoded(**{field: value}))


@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", 1714557600),
    ("occurred_at", "yesterday"),
    ("schema_version", "one"),
])
def test_a_value_of_the_wrong_type_is_named_in_the_error(field: str, value: Any) -> None:
    with pytest.raises(EventDecodeError, match=field):
        decode_event(Tracked, encoded(**{field: value}))


@pytest.mark.parametrize(("field", "value"), [
    ("event_id", None),
    ("session_id", None),
    ("session_id", {"id": "sess-0001"}),
    ("event_id", ["4f1c0a"]),
])
def test_null_or_a_structure_for_a_text_field_is_refused(field: str, value: Any) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(Tracked, encoded(**{field: value}))


def test_a_null_time_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="occurred_at"):
        decode_event(Tracked, encoded(occurred_at=None))


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_json_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(Tracked, raw)


optional_text = st.none() | st.text(min_size=1, max_size=20)
utc_offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)),
                        st.integers(-(23 * 60 + 59), 23 * 60 + 59))


@settings(max_examples=200, deadline=None)
@given(
    type_=st.sampled_from(TRACKING_TYPES),
    event_id=st.text(min_size=1, max_size=40),
    session_id=st.text(min_size=1, max_size=40),
    occurred_at=st.datetimes(timezones=st.just(UTC) | utc_offsets),
    correlation_id=st.text(max_size=20),
    user_id=optional_text,
    sku=optional_text,
    query=optional_text,
    path=optional_text,
)
def test_an_event_survives_dumps_and_decode(
    type_: str, event_id: str, session_id: str, occurred_at: datetime, correlation_id: str,
    user_id: str | None, sku: str | None, query: str | None, path: str | None,
) -> None:
    event = Tracked(type=type_, event_id=event_id, occurred_at=occurred_at,
                    correlation_id=correlation_id, session_id=session_id, user_id=user_id,
                    sku=sku, query=query, path=path)
    decoded = decode_event(Tracked, event.dumps())
    assert decoded == event
    assert decoded.occurred_at.utcoffset() == occurred_at.utcoffset()


def test_events_are_plain_json_without_faust_metadata() -> None:
    event = Tracked(type="search", event_id=new_event_id(), occurred_at=utcnow(),
                    session_id="sess-0001", query="shoes")
    data = json.loads(event.dumps())
    assert "__faust" not in data
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["query"] == "shoes"


def test_new_event_ids_are_unique_and_utcnow_is_aware() -> None:
    assert len({new_event_id() for _ in range(100)}) == 100
    assert utcnow().utcoffset() == timedelta(0)
