"""Log records as the central log keeps them: which service, which level, and their JSON.

Pure functions, shared by the shipping handler (:mod:`rabbit_bridge.log_shipping`), the
store (:mod:`rabbit_bridge.log_store`) and the admin views.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BRIDGE_LOGGERS",
    "LEVELS",
    "SHOP_LAYERS",
    "level_number",
    "log_entry",
    "routing_key",
    "service_name",
    "ships",
]

#: Level names in rising order of severity.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Layers of the shop's own code: ``<layer>.<domain>`` loggers belong to service ``<domain>``.
SHOP_LAYERS = frozenset({"agents", "tables", "web", "models", "config", "rabbit_bridge",
                         "scripts"})

#: Loggers never shipped: the bridge itself and its AMQP client (shipping would feed itself).
BRIDGE_LOGGERS = ("rabbit_bridge", "aio_pika", "aiormq", "pamqp")

_SHOP_ROOTS = SHOP_LAYERS | {"app"}
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


def ships(record: logging.LogRecord, library_level: int = logging.WARNING) -> bool:
    """Return True if ``record`` goes to the central log.

    Never the bridge's own records (no feedback loop); the shop's loggers at any level the
    handler lets through; other libraries (Faust, aiokafka...) from ``library_level`` up.
    """
    name = record.name
    if _is_bridge(name):
        return False
    if name.split(".", 1)[0] in _SHOP_ROOTS:
        return True
    return record.levelno >= library_level


def log_entry(record: logging.LogRecord, message: str, worker: str,
              event_id: str | None = None) -> dict[str, Any]:
    """Return the JSON document of ``record`` (its ``message`` already formatted).

    ``event_id`` identifies the record for good (a random one when not given).
    """
    exception = ""
    if record.exc_info and record.exc_info[0] is not None:
        exception = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    elif record.exc_text:
        exception = record.exc_text
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
        "service": service_name(record.name),
        "level": record.levelname,
        "logger": record.name,
        "message": message,
        "request_id": str(getattr(record, "request_id", "") or ""),
        "correlation_id": str(getattr(record, "correlation_id", "") or ""),
        "worker": worker,
        "exception": exception,
    }
