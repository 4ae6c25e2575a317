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

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

__all__ = [
    "RECENT_IDS",
    "Position",
    "Send",
    "already_applied",
    "decide_once",
    "mark_applied",
    "update_many",
    "update_once",
]

REPLAYS_SKIPPED = Counter(
    "shop_replays_skipped_total",
    "Events a table row had already absorbed: redelivered (reason=replay: an offset the row "
    "has seen, after a crash or a rebalance) or appended again (reason=duplicate: a known "
    "event id at a new offset)",
    ["table", "reason"],
)

Row = dict[str, Any]

#: A message to send: (topic, key, JSON value).
Send = tuple[str, str, str]

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


def mark_applied(
    row: Mapping[str, Any],
    position: Position,
    sends: Sequence[Send] | None = None,
    *,
    keep_sends: int = 1,
    before: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a copy of ``row`` that records the event at ``position`` as applied.

    The history (offsets, recent ids, kept sends) is taken from ``before``, the row as it was
    before the event, when given: rules build their new rows fresh, without it. ``sends`` are
    the messages the event caused; the row keeps those of its ``keep_sends`` most recent events
    that sent anything, to be sent again if such an event is redelivered (see
    :func:`decide_once`).
    """
    applied = (before if before is not None else row).get("_applied") or {}
    offsets = dict(applied.get("offsets", {}))
    offsets[position.topic] = max(position.offset, offsets.get(position.topic, -1))
    ids = list(applied.get("ids", ()))
    if position.event_id not in ids:
        ids = [*ids, position.event_id][-RECENT_IDS:]
    marked: dict[str, Any] = {"offsets": offsets, "ids": ids}
    sent = _sent(applied)
    if sends:
        sent = [*sent, {"event_id": position.event_id, "sends": [list(s) for s in sends]}]
        sent = sent[-keep_sends:]
    if sent:
        marked["sent"] = sent
    return {**row, "_applied": marked}


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
    if _skip(table, key, row, position, table_name):
        return False
    table[key] = mark_applied(update(row), position, before=row)
    return True


def update_many(
    table: MutableMapping[str, Row],
    key: str,
    updates: Sequence[tuple[Position, Callable[[Row | None], Row]]],
    *,
    table_name: str = "",
) -> list[tuple[int, Exception]]:
    """Apply ``updates`` to one row as :func:`update_once` would one by one; write it once.

    For a batch: the row is read once, each update it has not absorbed yet is applied in
    order (with its position marked), and the row is written once if anything changed. An
    update that raises is left out (the others still apply); returned as (its index, error).
    """
    row = table.get(key)
    changed = False
    failed: list[tuple[int, Exception]] = []
    for index, (position, update) in enumerate(updates):
        if already_applied(row, position):
            assert row is not None
            _count_skip(table, table_name, row, position)
            if _offset_is_new(row, position):
                row = mark_applied(row, position)
            changed = True  # written again: see _skip
            continue
        try:
            updated = update(row)
        except Exception as exc:
            failed.append((index, exc))
            continue
        row = mark_applied(updated, position, before=row)
        changed = True
    if changed and row is not None:
        table[key] = row
    return failed


def decide_once(
    table: MutableMapping[str, Row],
    key: str,
    position: Position,
    decide: Callable[[Row | None], tuple[Row | None, list[Send]]],
    *,
    table_name: str = "",
    keep_sends: int = 1,
    rewrite_first: Callable[[Row], None] | None = None,
) -> list[Send]:
    """Apply ``decide(row) -> (new row, sends)`` once; return the messages to send.

    A redelivered event is skipped, except that the redelivery of one of the row's
    ``keep_sends`` most recent sending events returns that event's sends again: the worker may
    have crashed after writing the row to its store and before those messages left (the row
    is written first, and a later event on the row proves nothing about the producer's buffer).
    Sending them twice is safe, since every consumer is idempotent. Rows written by many
    events per second (a sku's stock) keep one, since their consumers ask again for a lost
    answer; rows whose messages nobody asks for again (an order's releases, commits and
    refunds) keep every one of their events' (``keep_sends=RECENT_IDS``). A decision with no
    row (None) writes nothing. ``rewrite_first(row)`` writes again, before a skipped row is
    (see :func:`_skip`), the other rows that row depends on (a sku's archive rows).
    """
    row = table.get(key)
    if _skip(table, key, row, position, table_name, rewrite_first):
        for sent in _sent((row or {}).get("_applied") or {}):
            if sent["event_id"] == position.event_id:
                return [(topic, k, value) for topic, k, value in sent["sends"]]
        return []
    new_row, sends = decide(row)
    if new_row is not None:
        table[key] = mark_applied(new_row, position, sends, keep_sends=keep_sends, before=row)
    return sends


def _sent(applied: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the kept sends of a row's recent events, oldest first."""
    if "sent" in applied:
        return list(applied["sent"])
    last = applied.get("last")  # rows written before several events' sends were kept
    return [last] if last and last.get("sends") else []


def _skip(table: MutableMapping[str, Row], key: str, row: Row | None, position: Position,
          table_name: str, rewrite_first: Callable[[Row], None] | None = None) -> bool:
    """Return True if ``row`` already has the event (and count it as skipped)."""
    if not already_applied(row, position):
        return False
    assert row is not None
    _count_skip(table, table_name, row, position)
    if rewrite_first is not None:
        rewrite_first(row)
    # Written again all the same. A duplicate append (same id, new offset) marks its offset
    # too, so that a redelivery of it is still skipped once its id has left the ring. A
    # redelivery rewrites the row as it is: the worker that wrote it may have died before
    # the row's changelog record left, keeping it only in its local store, and a worker that
    # takes the partition over later restores the changelog alone.
    table[key] = mark_applied(row, position) if _offset_is_new(row, position) else row
    return True


def _count_skip(table: MutableMapping[str, Row], table_name: str, row: Row,
                position: Position) -> None:
    reason = "duplicate" if _offset_is_new(row, position) else "replay"
    REPLAYS_SKIPPED.labels(table_name or getattr(table, "name", "?"), reason).inc()


def _offset_is_new(row: Mapping[str, Any], position: Position) -> bool:
    last = (row.get("_applied") or {}).get("offsets", {}).get(position.topic)
    return last is None or position.offset > last
