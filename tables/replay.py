"""Replay guard: make a table update duplicate-safe under at-least-once delivery.

Kafka redelivers after a crash or a rebalance: the events after the last committed offset are
processed again, and a producer retry can append the same event twice. Each table row keeps,
under ``"_applied"``, the highest source offset it has absorbed per topic and the ids of its
most recent events. A row is only ever written while processing an event of the partition the
row lives in (Faust writes a table's changelog to the current event's partition), so offsets
of one topic are comparable for one row.

    update_once(table, key, position, lambda row: new_row(row))

which skips (and counts in ``shop_replays_skipped_total``) an event the row already has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

__all__ = ["RECENT_IDS", "Position", "already_applied", "mark_applied", "update_once"]

REPLAYS_SKIPPED = Counter(
    "shop_replays_skipped_total",
    "Redelivered or duplicate events a table row had already absorbed",
    ["table"],
)

Row = dict[str, Any]

#: How many recent event ids a row remembers (catches duplicates a producer appended twice).
RECENT_IDS = 16


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event came from: its topic, offset in its partition, and its event id."""

    topic: str
    offset: int
    event_id: str


def already_applied(row: Mapping[str, Any] | None, position: Position) -> bool:
    """Return True if ``row`` has absorbed the event at ``position`` (a replay or duplicate)."""
    if not row:
        return False
    applied = row.get("_applied") or {}
    last = applied.get("offsets", {}).get(position.topic)
    if last is not None and position.offset <= last:
        return True
    return position.event_id in applied.get("ids", ())


def mark_applied(row: Mapping[str, Any], position: Position) -> dict[str, Any]:
    """Return a copy of ``row`` that records the event at ``position`` as applied."""
    applied = row.get("_applied") or {}
    offsets = dict(applied.get("offsets", {}))
    offsets[position.topic] = max(position.offset, offsets.get(position.topic, -1))
    ids = list(applied.get("ids", ()))
    if position.event_id not in ids:
        ids = [*ids, position.event_id][-RECENT_IDS:]
    return {**row, "_applied": {"offsets": offsets, "ids": ids}}


def update_once(
    table: MutableMapping[str, Row],
    key: str,
    position: Position,
    update: Callable[[Row | None], Row],
    *,
    table_name: str = "",
) -> bool:
    """Set ``table[key] = update(row)`` unless the row already has the event; return if set."""
    row = table.get(key)
    if already_applied(row, position):
        REPLAYS_SKIPPED.labels(table_name or getattr(table, "name", "?")).inc()
        if row is not None and _offset_is_new(row, position):
            # A duplicate append (same id, new offset): remember the offset too, so that a
            # redelivery of it is still skipped once its id has left the ring.
            table[key] = mark_applied(row, position)
        return False
    table[key] = mark_applied(update(row), position)
    return True


def _offset_is_new(row: Mapping[str, Any], position: Position) -> bool:
    last = (row.get("_applied") or {}).get("offsets", {}).get(position.topic)
    return last is None or position.offset > last
