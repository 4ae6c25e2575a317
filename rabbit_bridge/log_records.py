"""Log records as the central log keeps them: which service, which level, and their JSON.

Pure functions, shared by the shipping handler (:mod:`rabbit_bridge.log_shipping`), the
store (:mod:`rabbit_bridge.log_store`) and the admin views.

A record's document has a fixed set of fields, and, only when the record has them, the ids
of the order, ticket and user it is about (``order_id``, ``ticket_id``, ``user_id``: set with
``extra=``, or from what the event being handled is about, models/tracing.py) and its
``trace`` step (an object: kind ``http``, ``event`` or ``mail`` and its details).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from models.tracing import NO_SUBJECT, SUBJECT_FIELDS, TRACE_LOGGER

__all__ = [
    "BRIDGE_LOGGERS",
    "LEVELS",
    "SHOP_LAYERS",
    "level_number",
    "log_entry",
    "log_json",
    "routing_key",
    "service_name",
    "ships",
    "subject_ids",
]

#: Level names in rising order of severity.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Layers of the shop's own code: ``<layer>.<domain>`` loggers belong to service ``<domain>``.
SHOP_LAYERS = frozenset({"agents", "tables", "web", "models", "config", "rabbit_bridge", "runtime",
                         "scripts"})

#: Loggers never shipped: the bridge itself and its AMQP client (shipping would feed itself).
BRIDGE_LOGGERS = ("rabbit_bridge", "aio_pika", "aiormq", "pamqp")

#: ``json.dumps(trace, default=str, separators=(",", ":"))``, its encoder made once (a trace
#: step is logged for every /api request).
_TRACE_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))

_SHOP_ROOTS = SHOP_LAYERS | {"app", TRACE_LOGGER}
_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def service_name(logger: str) -> str:
    """Return the service a logger speaks for: ``agents.orders`` -> ``orders``, ``app`` -> app.

    Loggers of other libraries are named by their package (``faust.worker`` -> ``faust``).
    The name is safe as a routing-key word (lowercase letters, digits, ``_`` and ``-``).
    """
    parts = logger.split(".")
    name = parts[1] if parts[0] in SHOP_LAYERS and len(parts) > 1 else parts[0] or "root"
    return _UNSAFE.sub("-", name.lower()).strip("-") or "root"


def level_number(name: str) -> int:
    """Return the number of level ``name`` (any case); unknown names rank as INFO."""
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO


def routing_key(service: str, level: str) -> str:
    """Return the routing key of a record on ``shop.logs``: ``<service>.<level>``."""
    return f"{service}.{level.lower()}"


def _is_bridge(logger: str) -> bool:
    return any(logger == name or logger.startswith(name + ".") for name in BRIDGE_LOGGERS)


@lru_cache(maxsize=4096)
def _lowest_shipped(logger: str, library_level: int) -> float:
    """Return the lowest level shipped from ``logger`` (infinity: none)."""
    if _is_bridge(logger):
        return float("inf")
    if logger.split(".", 1)[0] in _SHOP_ROOTS:
        return float("-inf")
    return library_level


def ships(record: logging.LogRecord, library_level: int = logging.WARNING) -> bool:
    """Return True if ``record`` goes to the central log.

    Never the bridge's own records (no feedback loop); the shop's loggers at any level the
    handler lets through; other libraries (Faust, aiokafka...) from ``library_level`` up.
    The rule is worked out once per logger.
    """
    return record.levelno >= _lowest_shipped(record.name, library_level)


def _exception(record: logging.LogRecord) -> str:
    if record.exc_info and record.exc_info[0] is not None:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return record.exc_text or ""


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds")


def subject_ids(record: logging.LogRecord) -> list[tuple[str, str]]:
    """Return the (field, id) pairs of what ``record`` is about: its own ``order_id``,
    ``ticket_id``, ``user_id`` attributes, else those of the event being handled then."""
    attributes = record.__dict__  # a dict look-up: this runs for every record shipped
    subject = attributes.get("shop_subject") or ()
    named = []
    for index, field in enumerate(SUBJECT_FIELDS):
        value = attributes.get(field) or (subject[index] if index < len(subject) else "")
        if value:
            named.append((field, str(value)))
    return named


def _trace(record: logging.LogRecord) -> dict[str, Any] | None:
    trace = record.__dict__.get("trace")
    return trace if isinstance(trace, dict) else None


def log_entry(record: logging.LogRecord, message: str, worker: str,
              event_id: str | None = None) -> dict[str, Any]:
    """Return the JSON document of ``record`` (its ``message`` already formatted).

    ``event_id`` identifies the record for good (a random one when not given). This is the
    document's definition; the shipping handler writes the same text without building it
    (:func:`log_json`, held equal to this by a hypothesis test).
    """
    entry = _fixed_fields(record, message, worker, event_id)
    entry.update(subject_ids(record))
    trace = _trace(record)
    if trace is not None:
        entry["trace"] = json.loads(json.dumps(trace, default=str))
    return entry


def _fixed_fields(record: logging.LogRecord, message: str, worker: str,
                  event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "time": _time(record),
        "service": service_name(record.name),
        "level": record.levelname,
        "logger": record.name,
        "message": message,
        "request_id": str(getattr(record, "request_id", "") or ""),
        "correlation_id": str(getattr(record, "correlation_id", "") or ""),
        "worker": worker,
        "exception": _exception(record),
    }


@lru_cache(maxsize=4096)
def _logger_part(logger: str, level: str) -> tuple[str, str]:
    """Return the routing key and the JSON of the service, level and logger fields."""
    service = service_name(logger)
    return (routing_key(service, level),
            f'"service":{_quote(service)},"level":{_quote(level)},"logger":{_quote(logger)}')


def log_json(record: logging.LogRecord, message: str, worker: str,
             event_id: str) -> tuple[str, str]:
    """Return the routing key of ``record`` and its JSON text: :func:`log_entry`'s document,
    written without building it (the shipping handler's path, once per record shipped).
    ``worker`` is JSON already (a quoted string)."""
    key, logger_part = _logger_part(record.name, record.levelname)
    request_id = getattr(record, "request_id", "") or ""
    correlation_id = getattr(record, "correlation_id", "") or ""
    fixed = (
        f'{{"event_id":{_quote(event_id)},"time":"{_time(record)}",{logger_part},'
        f'"message":{_quote(message)},"request_id":{_quote(str(request_id))},'
        f'"correlation_id":{_quote(str(correlation_id))},"worker":{worker},'
        f'"exception":{_quote(_exception(record))}')
    attributes = record.__dict__
    if (attributes.get("shop_subject", NO_SUBJECT) is NO_SUBJECT and "trace" not in attributes
            and "order_id" not in attributes and "ticket_id" not in attributes
            and "user_id" not in attributes):
        return key, fixed + "}"  # most records: nothing more to look at
    named = subject_ids(record)
    trace = _trace(record)
    extra = "".join(f",{_quote(field)}:{_quote(value)}" for field, value in named)
    if trace is not None:
        extra += f',"trace":{_TRACE_ENCODER.encode(trace)}'
    return key, fixed + extra + "}"
