"""Analytics agents: tracked behaviour in batches (sessions, windows, users), then merged.

``analytics.tracked`` is the one agent of the ``analytics`` topic. It reads the topic in
batches of what the stream has ready (agents/batches.py); a message is one tracking event or
a pack of many (the tracking collector's, agents/tracking.py). It decodes each event once
(``read_tracked``), dead-letters what does not decode (a pack's bad event alone) and carries
on, and per source partition of the batch:

- adds each session's events to its ``session_activity`` row, under the replay guard, with
  one write per session (``tables/replay.update_many``);
- turns the events into facts (models/analytics.py) and folds them into the partition's rows
  of the Faust tumbling table ``minute_partials`` (1 minute: counters, per-sku figures,
  visitor sets): one write per (minute, partition) row, not one per event, its JSON bytes
  written once and sent on as they are;
- forwards a signed-in user's product views and carts to the recommendations topic
  (agents/recommendations.py).

One agent instead of three per-event ones: every agent of a topic pays Faust's per-event
cost for every event, and a table write per event costs more than the rest together.
:func:`count_purchases` folds the orders topic's ``order_confirmed`` notices the same way
(the order's lines are in the ``orders`` row of the same partition, as in agents/reports.py).

Event time: a fact lands in the minute of its ``occurred_at``. An event that reached the
broker more than ``SHOP_ANALYTICS_GRACE`` seconds after it happened is *late*: it is counted
only as ``late`` in the minute it arrived (the decision uses the broker's timestamp, so a
redelivery decides the same way).

Duplicate safety: every row keeps, under ``_applied`` (tables/replay.py's bookkeeping), the
highest source offset it absorbed; a redelivered batch folds only the facts past it, and a
producer's duplicate append inside one batch is dropped by its event id. Visitor sets are
unions, so they are duplicate-proof by nature. The forwarded behaviour's id is derived from
the source event's, so the recommendations agent skips a forward sent again.

Completeness on any worker: after each batch every written row is sent, whole, to the
one-partition ``analytics-rollup`` topic (also for a redelivery: the copy may not have left
before a crash). ``analytics.rollup``, its only reader and the single writer of what follows,
keeps the newest row per (minute, partition) by offset in ``rollup_sources`` with each
minute's merged counters, writes each minute's merged figures to the global
``analytics_windows`` (which every worker holds and the views read), and recounts the Faust
hopping table ``hop_partials`` (10 minutes every minute) from the merged minutes, copying
those rows too. A hopping row is derived (the sum of its ten minutes), so recounting it is
duplicate-safe; and the partitions' agents write one row a minute, not eleven. One partition
keeps the merge in one place; it handles a few rows a second, not events.

Faust's RocksDB store writes a row to the partition of the *current event*, which a batch
does not have; :func:`in_partition_of` makes the batch's last event of a partition current
while that partition's rows are written.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from faust.types import EventT, StreamT
from faust.types.windows import WindowT
from prometheus_client import Counter

from agents.batches import FOLD_WITHIN_S, Decoded, in_partition_of, ready_batches
from agents.dead_letters import dead_letter
from agents.order_notices import Failures, reads_order_notices
from agents.recommendations import forward_tracked
from agents.topics import analytics_topic, shop_topic
from app import app
from models.analytics import (
    COUNTERS,
    HOP_SIZE,
    MINUTE,
    PACKED_TYPE,
    Fact,
    TrackedFields,
    add_activities,
    fact_of,
    fold,
    merge,
    minute_of,
    purchase_facts,
    read_tracked,
    tracked_items,
)
from models.base import EventDecodeError, json_object
from models.orders import ORDER_EVENTS, OrderUpdate
from tables.analytics import (
    RETENTION,
    analytics_windows,
    hop_partials,
    minute_partials,
    rollup_sources,
    session_activity,
    window_key,
)
from tables.orders import orders
from tables.replay import REPLAYS_SKIPPED, Position, mark_applied, update_many

__all__ = ["AGENT", "absorb_batch", "absorb_tracked", "count_purchases",
           "merge_windows", "rollup_topic"]

#: The name of the analytics topic's agent (its dead letters carry it).
AGENT = "analytics.tracked"

#: analytics-rollup ["<window>|<source>"], one partition: partials of windows, as JSON.
rollup_topic = shop_topic("analytics-rollup", partitions=1)

#: Events a batch of the analytics topic and of the rollup takes at most (each waits
#: FOLD_WITHIN_S to fill: the longer, the fewer writes of a session's row).
BATCH = 5_000
ROLLUP_BATCH = 2_000
#: How often the merger drops windows past the retention (s).
SWEEP_EVERY_S = 60.0

NOT_CONFIRMED = frozenset(t for t in ORDER_EVENTS if t != "order_confirmed")
log = logging.getLogger(__name__)
LATE = Counter("shop_analytics_late_total", "Tracked events past the grace period")
#: The tracked agent's own work: events taken and seconds spent on them (its capacity).
COUNTED = Counter("shop_analytics_window_events_total", "Tracked events analytics.tracked took")
BUSY = Counter("shop_analytics_window_busy_seconds_total",
               "Seconds analytics.tracked spent on its batches")

#: The source name of the hopping rows: every partition, summed by the merger.
ALL_SOURCES = "all"

_minutes = minute_partials.table
_hops = hop_partials.table
_minute_window = cast(WindowT, _minutes.window)
_hop_window = cast(WindowT, _hops.window)


def _dumps(row: Any) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


# -- Session activity -------------------------------------------------------------------------


def absorb_sessions(decoded: Sequence[TrackedEvent]) -> list[tuple[TrackedEvent, Exception]]:
    """Add the events to their sessions' rows (one write a session); return what failed.

    Call in the partition's event context. A session's events of one message are one update
    of its row, under the message's position (see :class:`TrackedEvent`).
    """
    by_session: dict[str, list[TrackedEvent]] = defaultdict(list)
    for item in decoded:
        by_session[item.record.session_id].append(item)
    failed: list[tuple[TrackedEvent, Exception]] = []
    for session_id, items in by_session.items():
        units: dict[int, list[TrackedEvent]] = {}
        for item in items:
            units.setdefault(item.position.offset, []).append(item)
        mine = list(units.values())
        updates = [(unit[0].position, _activity_update(session_id, unit)) for unit in mine]
        for index, exc in update_many(session_activity, session_id, updates):
            failed.extend((item, exc) for item in mine[index])
    return failed


def _activity_update(session_id: str, unit: Sequence[TrackedEvent],
                     ) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    seen = [(item.record.type, item.record.occurred_at, item.record.user_id) for item in unit]
    return lambda row: add_activities(row, session_id, seen)


# -- Window partials --------------------------------------------------------------------------


def count_facts(source: str, topic: str, facts: Sequence[Fact]) -> list[tuple[str, bytes]]:
    """Fold ``facts`` of one source partition into its window rows; return the rows to send.

    Call in the partition's event context. Returns (rollup key, row bytes) for every row the
    facts belong to, also rows a redelivery left unchanged.
    """
    by_minute: dict[int, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_minute[minute_of(fact.at)].append(fact)
    sends = []
    for minute, group in by_minute.items():
        for window in _minute_window.ranges(minute):
            sends.append(_write(_minutes, "1m", source, window, topic, group))
    return sends


def _write(table: Any, kind: str, source: str, window: Any, topic: str,
           facts: list[Fact]) -> tuple[str, bytes]:
    """Fold the facts a row has not absorbed yet into it; return its rollup key and bytes."""
    key = (source, tuple(window))
    raw = table.get(key)
    row = json.loads(raw) if raw else None
    last = ((row or {}).get("_applied") or {}).get("offsets", {}).get(topic, -1)
    fresh = [fact for fact in facts if fact.offset > last]
    if len(fresh) < len(facts):
        REPLAYS_SKIPPED.labels(table.name, "replay").inc(len(facts) - len(fresh))
    if fresh or raw is None or len(fresh) < len(facts):  # a replay writes again: see replay._skip
        newest = max(fresh or facts, key=lambda f: f.offset)
        row = mark_applied(fold(row, fresh, detailed=True),
                           Position(topic, newest.offset, newest.event_id), before=row)
        raw = _dumps(row)
        table[key] = raw
    return f"{window_key(kind, window[0])}|{source}", raw


def _unique(facts: list[Fact]) -> list[Fact]:
    """Drop facts of an event id already seen in the batch (a producer's duplicate append)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for fact in facts:
        mark = (fact.event_id, fact.kind)
        if fact.kind != "purchase_line" and mark in seen:
            continue
        seen.add(mark)
        kept.append(fact)
    return kept


def _send_rows(sends: list[tuple[str, bytes]]) -> None:
    """Put the rows on the rollup topic (through the producer's buffer, as changelogs go)."""
    for key, value in sends:
        rollup_topic.send_soon(key=key, value=value)


@dataclass(frozen=True, slots=True)
class TrackedEvent:
    """A tracked event of a batch, decoded once: its Faust event, JSON, record and position.

    A message is one event or a pack of many (models/analytics.py ``tracked_items``). The
    replay guard's unit is the message: ``position`` is its offset with the event's id, or
    for a pack the pack's id. A dead letter of an event of a pack holds just the event.
    """

    event: EventT
    data: dict[str, Any]
    record: TrackedFields
    position: Position
    packed: bool = False

    @property
    def raw(self) -> bytes | None:
        """The event's own JSON if it came in a pack (None: the message is the event)."""
        return _dumps(self.data) if self.packed else None


async def decode_tracked(event: EventT) -> list[TrackedEvent]:
    """Return the tracking events of one message; dead-letter what does not decode."""
    message = event.message
    try:
        data = json_object(message.value)
        items = tracked_items(data)
    except Exception as exc:
        await dead_letter(event, exc, agent=AGENT, stage="decode")
        return []
    packed = data.get("type") == PACKED_TYPE
    decoded = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise EventDecodeError(f"expected a JSON object, got {type(item).__name__}")
            record = read_tracked(item)
        except Exception as exc:
            if packed:  # the letter holds the event alone, with where it was in the pack
                exc = EventDecodeError(f"event {index} of the pack: {exc}")
            await dead_letter(event, exc, agent=AGENT, stage="decode",
                              payload=_dumps(item) if packed else None)
            continue
        unit = data["event_id"] if packed else record.event_id
        decoded.append(TrackedEvent(event, item, record,
                                    Position(message.topic, message.offset, unit), packed))
    return decoded


async def absorb_batch(events: Sequence[EventT]) -> int:
    """Take a batch of the analytics topic into sessions, windows and users' behaviour.

    Return how many tracking events it decoded.
    """
    grace = app.settings.analytics_grace
    by_partition: dict[int, list[TrackedEvent]] = defaultdict(list)
    for event in events:  # each message once (ready_batches drops a second copy)
        by_partition[event.message.partition].extend(await decode_tracked(event))
    for partition, decoded in by_partition.items():
        if not decoded:
            continue
        failed: list[tuple[TrackedEvent, Exception]] = []
        facts = []
        for item in decoded:
            message = item.event.message
            try:
                fact = fact_of(item.record, message.offset, message.timestamp, grace)
            except Exception as exc:
                failed.append((item, exc))
                continue
            if fact.kind == "late":
                LATE.inc()
            facts.append(fact)
        topic = decoded[-1].event.message.topic
        with in_partition_of(decoded[-1].event):
            failed.extend(absorb_sessions(decoded))
            sends = count_facts(f"t{partition}", topic, _unique(facts)) if facts else []
        _send_rows(sends)
        forward_tracked([item.record for item in decoded])
        for item, error in failed:
            await dead_letter(item.event, error, agent=AGENT, stage="handle", payload=item.raw)
    return sum(len(decoded) for decoded in by_partition.values())


@app.agent(analytics_topic, name=AGENT)
async def absorb_tracked(stream: StreamT[bytes]) -> None:
    """Consume the analytics topic, in batches, into sessions, windows and users' behaviour."""
    async for events in ready_batches(stream, BATCH, within=FOLD_WITHIN_S, agent=AGENT):
        began = time.perf_counter()
        taken = await absorb_batch(events)
        BUSY.inc(time.perf_counter() - began)
        COUNTED.inc(taken)


@reads_order_notices("analytics", {"order_confirmed"})
async def count_purchases(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
    """Count confirmed orders (and their lines) in their partition's window rows; send them.

    Called with one partition's notices, in its event context: one write a minute row.
    """
    facts: list[Fact] = []
    for notice in notices:
        event = notice.record
        order = orders.get(event.order_id) or {}
        facts.extend(purchase_facts(notice.position.offset, event.occurred_at.timestamp(),
                                    event.user_id, event.total_cents, order.get("items", ()),
                                    event.event_id))
    last = notices[-1].event.message
    _send_rows(count_facts(f"o{last.partition}", last.topic, _unique(facts)))
    return []


# -- The merge --------------------------------------------------------------------------------


def _offset_of(partial: dict[str, Any]) -> int:
    return max((partial.get("_applied") or {}).get("offsets", {"": -1}).values())


def _source_summary(partial: dict[str, Any]) -> dict[str, Any]:
    return {**{name: partial.get(name, 0) for name in COUNTERS},
            "visitors": len(partial.get("visitors", ())),
            "skus": len(partial.get("skus", ())),
            "offset": _offset_of(partial)}


def merge_window(window: str, parts: dict[str, tuple[int, bytes]]) -> None:
    """Keep the newer of ``parts`` (source -> (offset, bytes)); write the minute's copy.

    The minute's merged counters are kept in its index row too, for the hopping windows.
    """
    raw_index = rollup_sources.get(window)
    index = json.loads(raw_index) if raw_index else {"offsets": {}}
    offsets: dict[str, int] = index["offsets"]
    changed = False
    for source, (offset, raw) in parts.items():
        if offset > offsets.get(source, -1):
            rollup_sources[f"{window}|{source}"] = raw
            offsets[source] = offset
            changed = True
        else:
            REPLAYS_SKIPPED.labels(rollup_sources.name, "replay").inc()
    partials = {}
    for source in offsets:
        stored = rollup_sources.get(f"{window}|{source}")
        if stored:
            partials[source] = json.loads(stored)
    merged = merge(partials.values())
    counters = {name: merged[name] for name in COUNTERS}
    if changed or index.get("counters") != counters:
        index["counters"] = counters
        rollup_sources[window] = _dumps(index)
    merged["sources"] = {s: _source_summary(p) for s, p in sorted(partials.items())}
    # Written every time, also for a redelivery: the copy may not have been written before.
    analytics_windows[window] = _dumps(merged)


def count_hops(minutes: set[int]) -> None:
    """Recount the hopping windows holding ``minutes`` from the minutes' merged counters.

    A hopping window's row is the sum of its ten minutes (derived, so recounting it after a
    redelivery gives the same row): written to the hopping table and copied for the views.
    """
    windows = {tuple(w) for minute in minutes for w in _hop_window.ranges(minute)}
    for start, end in sorted(windows):
        totals = dict.fromkeys(COUNTERS, 0)
        for minute in range(int(start), int(start) + HOP_SIZE, MINUTE):
            raw = rollup_sources.get(window_key("1m", minute))
            for name, value in (json.loads(raw).get("counters", {}) if raw else {}).items():
                totals[name] = totals.get(name, 0) + value
        row = _dumps(totals)
        _hops[(ALL_SOURCES, (start, end))] = row
        analytics_windows[window_key("10m", start)] = _dumps(
            {**totals, "sources": {ALL_SOURCES: {**totals, "offset": None}}})


def sweep(now: float) -> int:
    """Drop windows older than the retention from the merger's tables; return how many."""
    oldest = now - RETENTION.total_seconds()
    old = [key for key in list(rollup_sources.keys())
           if int(key.split("|")[0].split(":")[1]) < oldest]
    for key in old:
        del rollup_sources[key]
    copies = [key for key in list(analytics_windows.keys())
              if int(key.split(":")[1]) < oldest]
    for key in copies:
        del analytics_windows[key]
    return len(old) + len(copies)


@app.agent(rollup_topic, name="analytics.rollup")
async def merge_windows(stream: StreamT[bytes]) -> None:
    """Consume the rollup topic into each window's merged figures, on every worker."""
    next_sweep = 0.0
    async for events in ready_batches(stream, ROLLUP_BATCH, within=FOLD_WITHIN_S,
                                      agent="analytics.rollup"):
        newest: dict[str, dict[str, tuple[int, bytes]]] = defaultdict(dict)
        for event in events:
            message = event.message
            try:
                key = message.key.decode() if isinstance(message.key, bytes) else message.key
                window, _, source = str(key).partition("|")
                partial = json.loads(message.value or b"null")
                offset = _offset_of(partial)
                if not source or ":" not in window:
                    raise ValueError(f"a rollup key is '<window>|<source>', not {key!r}")
            except Exception as exc:
                await dead_letter(event, exc, agent="analytics.rollup", stage="decode")
                continue
            known = newest[window].get(source)
            if known is None or offset > known[0]:
                newest[window][source] = (offset, message.value or b"")
        with in_partition_of(events[-1]):
            for window, parts in newest.items():
                merge_window(window, parts)
            count_hops({int(w.split(":")[1]) for w in newest if w.startswith("1m:")})
            if time.time() >= next_sweep:
                sweep(time.time())
                next_sweep = time.time() + SWEEP_EVERY_S


