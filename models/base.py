"""The envelope every ShopStream event carries, and how raw bytes become an event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from faust.models.fields import StringField

__all__ = ["Event", "EventDecodeError", "decode_event", "new_event_id", "utcnow"]

SCHEMA_VERSION = 1


def new_event_id() -> str:
    """Return a fresh event id (a random UUID, the key of idempotency)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Event(
    faust.Record,
    abstract=True,
    serializer="json",
    include_metadata=False,
    validation=True,
    coerce=True,
    isodates=True,
):
    """Base of every event: id for idempotency, type, time, correlation and schema version.

    Events are plain JSON on the wire (no Faust metadata), so any producer can write them.
    """

    type: str
    event_id: str
    occurred_at: datetime
    correlation_id: str = StringField(required=False, allow_blank=True, default="")
    schema_version: int = SCHEMA_VERSION


E = TypeVar("E", bound=Event)


class EventDecodeError(ValueError):
    """The bytes are not a valid event of the expected type; the message says why."""


def decode_event(model: type[E], raw: bytes | str | None) -> E:
    """Decode and validate one event of ``model`` from JSON bytes; raise EventDecodeError."""
    if raw is None:
        raise EventDecodeError("empty message value")
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventDecodeError(f"expected a JSON object, got {type(data).__name__}")
    missing = _required_fields(model) - data.keys()
    if missing:
        fields = ", ".join(sorted(missing))
        raise EventDecodeError(f"not a valid {model.__name__}: missing {fields}")
    try:
        event = model.from_data(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise EventDecodeError(f"not a valid {model.__name__}: {exc}") from None
    errors = event.validate()
    if errors:
        raise EventDecodeError(f"not a valid {model.__name__}: {errors[0]}")
    if event.occurred_at.tzinfo is None:
        raise EventDecodeError("occurred_at must carry a timezone (UTC)")
    return event


def _required_fields(model: type[Event]) -> set[str]:
    """Return the names of ``model``'s fields that have no default."""
    options = model._options
    return set(options.fields) - set(options.defaults)
