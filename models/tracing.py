"""Following one request through the platform: its id on every event and log record it causes,
and the timeline of what happened.

The gateway gives each HTTP request an id (``X-Request-Id``) and holds it in
:data:`REQUEST_ID` while the request is handled. Every Kafka message sent meanwhile carries
it as the header :data:`REQUEST_ID_HEADER`; an agent handling a message with that header holds
the id again while it handles it, so what the agent sends and logs carries it too (and so on,
hop after hop). RabbitMQ messages carry it as the same header.

A log record names the order, ticket or user it is about with the ``order_id``, ``ticket_id``
or ``user_id`` attribute (``extra=`` of a logging call), or, while an agent handles an event
that names one, through :data:`SUBJECT`. Records of the ``trace`` loggers mark the steps of a
request: an HTTP request answered, an event handled, a mail sent; their ``trace`` attribute
says which (:func:`timeline` orders them).

Pure functions and context variables: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "NO_SUBJECT",
    "REQUEST_ID",
    "REQUEST_ID_HEADER",
    "SUBJECT",
    "SUBJECT_FIELDS",
    "TRACE_LOGGER",
    "Subject",
    "header_request_id",
    "kafka_headers",
    "request_ids_of",
    "started_at",
    "step_of",
    "subject_of",
    "timeline",
    "valid_id",
]

#: The id of the request being handled (on every log record as ``request_id``).
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")

#: The header of a Kafka or RabbitMQ message that carries the id of the request that caused it.
REQUEST_ID_HEADER = "shop-request-id"

#: The ids a log record may name, in this order in a :data:`Subject`.
SUBJECT_FIELDS = ("order_id", "ticket_id", "user_id")
#: (order id, ticket id, user id) an event is about; "" where it names none.
Subject = tuple[str, str, str]
NO_SUBJECT: Subject = ("", "", "")
#: What the event being handled is about (on every log record written meanwhile).
SUBJECT: ContextVar[Subject] = ContextVar("subject", default=NO_SUBJECT)

#: The root of the loggers whose records are the steps of a trace (``trace.http``...).
TRACE_LOGGER = "trace"

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEADER_BYTES = REQUEST_ID_HEADER.encode()


def valid_id(text: str) -> bool:
    """Return True if ``text`` is a usable request id (1-128 letters, digits, ``._:-``)."""
    return _VALID_ID.fullmatch(text) is not None


def kafka_headers(request_id: str) -> list[tuple[str, bytes]] | None:
    """Return the headers of a message sent while ``request_id`` is handled (None: none)."""
    return [(REQUEST_ID_HEADER, request_id.encode())] if request_id else None


def header_request_id(headers: Sequence[tuple[Any, Any]] | Mapping[Any, Any] | None) -> str:
    """Return the request id a message's headers carry, or "" (none, or not a valid id).

    Kafka headers come as (name, bytes) pairs, RabbitMQ's as a mapping; names may be bytes.
    """
    if not headers:
        return ""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name in (REQUEST_ID_HEADER, _HEADER_BYTES):
            if isinstance(value, bytes | bytearray):
                try:
                    value = bytes(value).decode("ascii")
                except UnicodeDecodeError:
                    return ""
            text = str(value)
            return text if valid_id(text) else ""
    return ""


def subject_of(event: Any) -> Subject:
    """Return the (order, ticket, user) ids ``event`` names in its fields."""
    fields = getattr(event, "__dict__", {})
    return (str(fields.get("order_id") or ""), str(fields.get("ticket_id") or ""),
            str(fields.get("user_id") or ""))


def started_at(entry: Mapping[str, Any]) -> str:
    """Return when the step of log record ``entry`` began (ISO time).

    An HTTP request is logged once answered, with how long it took: it began that long
    before (so it comes before the events it sent). Anything else began when it was logged.
    """
    logged = str(entry.get("time", ""))
    trace = entry.get("trace")
    if not isinstance(trace, Mapping) or trace.get("kind") != "http":
        return logged
    try:
        took = float(trace.get("ms", 0))
        return (datetime.fromisoformat(logged) - timedelta(milliseconds=took)).isoformat(
            timespec="microseconds")
    except (TypeError, ValueError, OverflowError):
        return logged


def timeline(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return ``entries`` (log records) each once (by ``event_id``), oldest first by the time
    their step began, with that time as ``at``."""
    seen: set[str] = set()
    steps = []
    for entry in entries:
        key = str(entry.get("event_id", ""))
        if key and key in seen:
            continue
        seen.add(key)
        steps.append({**entry, "at": started_at(entry)})
    steps.sort(key=lambda step: (step["at"], str(step.get("time", ""))))
    return steps


def request_ids_of(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the request ids ``entries`` carry, each once, in their order."""
    found: dict[str, None] = {}
    for entry in entries:
        rid = str(entry.get("request_id") or "")
        if rid:
            found[rid] = None
    return list(found)


def step_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return the timeline row of log record ``entry``: when it began (``at``), the worker,
    the kind (``http``, ``event``, ``mail`` or ``log``), what it touched (a method and
    path, a topic[partition]@offset, a queue, or the service of a plain record) and a
    one-line summary."""
    trace = entry.get("trace")
    kind = str(trace.get("kind", "log")) if isinstance(trace, Mapping) else "log"
    if kind == "http" and isinstance(trace, Mapping):
        what = f"{trace.get('method', '')} {trace.get('path', '')}"
    elif kind == "event" and isinstance(trace, Mapping):
        what = f"{trace.get('topic', '')}[{trace.get('partition', '')}]@{trace.get('offset', '')}"
    elif kind == "mail" and isinstance(trace, Mapping):
        what = str(trace.get("queue", ""))
    else:
        what = str(entry.get("service", ""))
    return {
        "at": entry.get("at") or started_at(entry),
        "time": str(entry.get("time", "")),
        "worker": str(entry.get("worker", "")),
        "kind": kind,
        "what": what,
        "type": str(trace.get("type", "")) if isinstance(trace, Mapping) else "",
        "summary": str(entry.get("message", "")),
        "level": str(entry.get("level", "")),
        "service": str(entry.get("service", "")),
        "request_id": str(entry.get("request_id", "")),
        "order_id": str(entry.get("order_id") or ""),
        "event_id": str(entry.get("event_id", "")),
        "trace": dict(trace) if isinstance(trace, Mapping) else None,
    }
