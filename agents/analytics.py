"""Analytics agents: tracked behaviour in batches (sessions, windows, users), then merged.

``analytics.tracked`` is the one agent of the ``analytics`` topic. It reads the topic in
batches of what the stream has ready (agents/batches.py), decodes each event once,
dead-letters what does not decode (and carries on), and per source partition of the batch:

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

from agents.batches import Decoded, in_partition_of, ready_batches
from agents.dead_letters import dead_letter
from agents.order_notices import Failures, reads_order_notices
from agents.recommendations import forward_tracked
from agents.topics import analytics_topic, shop_topic
from app import app, settings
from models.analytics import (
    COUNTERS,
    HOP_SIZE,
    MINUTE,
    Fact,
    Tracked,
    add_activity,
    fold,
    merge,
    minute_of,
    purchase_facts,
    tracked_fact,
)
from models.base import event_from_data, json_object
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

#: Events a batch of the analytics topic takes at most, and how long it waits to fill (s):
#: the longer, the fewer writes of a session's row (analytics tolerate half a second).
BATCH = 5_000
BATCH_WITHIN_S = 0.5
ROLLUP_BATCH = 2_000
ROLLUP_WITHIN_S = 0.5
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


def absorb_sessions(decoded: Sequence[TrackedEvent]) -> list[tuple[EventT, Exception]]:
    """Add the events to their sessions' rows (one write a session); return what failed.

    Call in the partition's event context.
    """
    by_session: dict[str, list[TrackedEvent]] = defaultdict(list)
    for item in decoded:
        by_session[item.record.session_id].append(item)
    failed: list[tuple[EventT, Exception]] = []
    for session_id, items in by_session.items():
        updates = [(item.position, _activity_update(item.record)) for item in items]
        failed.extend((items[index].event, exc)
                      for index, exc in update_many(session_activity, session_id, updates))
    return failed


def _activity_update(record: Tracked) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    return lambda row: add_activity(row, record)


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
        REPLAYS_SKIPPED.labels(table.name).inc(len(facts) - len(fresh))
    if fresh or raw is None:
        newest = max(fresh or facts, key=lambda f: f.offset)
        row = mark_applied(fold(row, fresh, detailed=True),
                           Position(topic, newest.offset, newest.event_id))
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
    """A tracked event of a batch, decoded once: its Faust event, JSON, record and position."""

    event: EventT
    data: dict[str, Any]
    record: Tracked
    position: Position


async def absorb_batch(events: Sequence[EventT]) -> None:
    """Take a batch of the analytics topic into sessions, windows and users' behaviour."""
    grace = settings.analytics_grace
    by_partition: dict[int, list[TrackedEvent]] = defaultdict(list)
    for event in events:
        message = event.message
        try:
            data = json_object(message.value)
            record = event_from_data(Tracked, data)
        except Exception as exc:
            await dead_letter(event, exc, agent=AGENT, stage="decode")
            continue
        position = Position(message.topic, message.offset, record.event_id)
        by_partition[message.partition].append(TrackedEvent(event, data, record, position))
    for partition, decoded in by_partition.items():
        failed: list[tuple[EventT, Exception]] = []
        facts = []
        for item in decoded:
            message = item.event.message
            try:
                fact = tracked_fact(item.data, message.offset, message.timestamp, grace)
            except Exception as exc:
                failed.append((item.event, exc))
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
        for event, error in failed:
            await dead_letter(event, error, agent=AGENT, stage="handle")


@app.agent(analytics_topic, name=AGENT)
async def absorb_tracked(stream: StreamT[bytes]) -> None:
    """Consume the analytics topic, in batches, into sessions, windows and users' behaviour."""
    async for events in ready_batches(stream, BATCH, within=BATCH_WITHIN_S):
        began = time.perf_counter()
        await absorb_batch(events)
        BUSY.inc(time.perf_counter() - began)
        COUNTED.inc(len(events))


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
            REPLAYS_SKIPPED.labels(rollup_sources.name).inc()
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
    async for events in ready_batches(stream, ROLLUP_BATCH, within=ROLLUP_WITHIN_S):
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


