"""The envelope every ShopStream event carries, and how raw bytes become an event."""

from __future__ import annotations

import builtins
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import UnionType
from typing import Any, TypeVar, Union, cast, get_args, get_origin

import faust

__all__ = [
    "Effect",
    "Event",
    "EventDecodeError",
    "EventTypes",
    "decode_event",
    "event_from_data",
    "event_types",
    "json_object",
    "new_event_id",
    "utcnow",
]

SCHEMA_VERSION = 1


def new_event_id() -> str:
    """Return a fresh event id (a random version-4 UUID, the key of idempotency).

    The bits come from ``random`` (seeded from the OS at start and again after a fork), not
    from ``os.urandom`` as ``uuid4`` does: an id must be unique, not secret, and a system call
    per event was measurable on the saga's path.
    """
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


E = TypeVar("E", bound="Event")


class Event(
    faust.Record,
    abstract=True,
    serializer="json",
    include_metadata=False,
    coerce=True,
    isodates=True,
):
    """Base of every event: id for idempotency, type, time, correlation and schema version.

    Events are plain JSON on the wire (no Faust metadata), so any producer can write them.
    """

    type: str
    event_id: str
    occurred_at: datetime
    correlation_id: str = ""
    schema_version: int = SCHEMA_VERSION

    #: The ``type`` of events of this class (classes with one type set it).
    event_type = ""

    @classmethod
    def new(cls: builtins.type[E], *, correlation_id: str = "", **fields: Any) -> E:
        """Return a new event of this class: fresh id, the current time, its own type."""
        return cls(type=cls.event_type, event_id=new_event_id(), occurred_at=utcnow(),
                   correlation_id=correlation_id, **fields)


#: Event classes by their ``type``, for topics that carry several kinds of event.
EventTypes = dict[str, type[Event]]


def event_types(*classes: type[Event]) -> EventTypes:
    """Return ``classes`` by their ``event_type``."""
    return {cls.event_type: cls for cls in classes}


@dataclass(frozen=True, slots=True)
class Effect:
    """An event a rule asks to send: to ``topic`` with ``key`` (rules do no I/O themselves)."""

    topic: str
    key: str
    event: Event


class EventDecodeError(ValueError):
    """The bytes are not a valid event of the expected type; the message says why."""


def decode_event(model: type[E] | EventTypes, raw: bytes | str | None) -> E:
    """Decode and validate one event of ``model`` from JSON bytes; raise EventDecodeError.

    ``model`` is one event class, or event classes by type (the event's ``type`` chooses).
    """
    return event_from_data(model, json_object(raw))


def json_object(raw: bytes | str | None) -> dict[str, Any]:
    """Return the JSON object in ``raw``; raise EventDecodeError if it is not one."""
    if raw is None:
        raise EventDecodeError("empty message value")
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from None
    except RecursionError:
        raise EventDecodeError("not JSON this service accepts: nested too deeply") from None
    if not isinstance(data, dict):
        raise EventDecodeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def event_from_data(model: type[E] | EventTypes, data: dict[str, Any]) -> E:
    """Validate a decoded JSON object as one event of ``model``; raise EventDecodeError."""
    if isinstance(model, dict):
        chosen = model.get(data.get("type"))  # type: ignore[arg-type]
        if chosen is None:
            known = ", ".join(sorted(model))
            raise EventDecodeError(f"unknown event type {data.get('type')!r} (known: {known})")
        model = cast(type[E], chosen)
    name = model.__name__
    missing = _required_fields(model) - data.keys()
    if missing:
        raise EventDecodeError(f"not a valid {name}: missing {', '.join(sorted(missing))}")
    problem = _wrong_type(model, data)
    if problem:
        raise EventDecodeError(f"not a valid {name}: {problem}")
    try:
        event = model.from_data(data)
    except Exception as exc:  # a model's own checks (__post_init__) and Faust's
        raise EventDecodeError(f"not a valid {name}: {exc}") from None
    if event.occurred_at.tzinfo is None:
        raise EventDecodeError(f"not a valid {name}: occurred_at must carry a timezone (UTC)")
    return event


def _required_fields(model: type[Event]) -> set[str]:
    """Return the names of ``model``'s fields that have no default."""
    options = model._options
    return set(options.fields) - set(options.defaults)


#: JSON types accepted for a field of each Python type (Faust would coerce anything to str).
_JSON_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    datetime: (str,),
}


def _wrong_type(model: type[Event], data: dict[str, Any]) -> str | None:
    """Return what is wrong with the first field of ``data`` of the wrong JSON type, if any."""
    for field, annotation in model._options.fields.items():
        if field not in data:
            continue
        value = data[field]
        args = set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else set()
        optional = type(None) in args
        base = next(iter(args - {type(None)}), annotation) if args else annotation
        if value is None:
            if optional:
                continue
            return f"{field} must not be null"
        accepted = _JSON_TYPES.get(base)
        if accepted is None:
            continue
        if not isinstance(value, accepted) or (base is not bool and isinstance(value, bool)):
            return f"{field} must be {_describe(base)}, got {type(value).__name__}"
        if base is str and value == "" and field not in model._options.defaults:
            return f"{field} must not be empty"
        if base is datetime and isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"{field} must be an ISO 8601 time, got {value!r}"
    return None


def _describe(kind: Any) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false",
            datetime: "an ISO 8601 time"}.get(kind, str(kind))
