"""Analytics agents: session activity, and windowed figures counted in batches then merged.

``analytics.session-activity`` adds each tracked behaviour to its session's row (replay
guard), one event at a time, and dead-letters what it cannot decode.

``analytics.windows`` reads the same topic in batches (``take_events``). It and
``analytics.purchases``, which reads the orders topic's ``order_confirmed`` notices (the
order's lines are in the ``orders`` row of the same partition, as in agents/reports.py),
turn what they read into facts (models/analytics.py) and fold them into their partition's
rows of the Faust tumbling table ``minute_partials`` (1 minute: counters, per-sku figures,
visitor sets). A batch becomes one write per (minute, partition) row, not one per event, and
the row's JSON bytes are written once and sent on as they are.

Event time: a fact lands in the minute of its ``occurred_at``. An event that reached the
broker more than ``SHOP_ANALYTICS_GRACE`` seconds after it happened is *late*: it is counted
only as ``late`` in the minute it arrived (the decision uses the broker's timestamp, so a
redelivery decides the same way).

Duplicate safety: every row keeps, under ``_applied`` (tables/replay.py's bookkeeping), the
highest source offset it absorbed; a redelivered batch folds only the facts past it, and a
producer's duplicate append inside one batch is dropped by its event id. Visitor sets are
unions, so they are duplicate-proof by nature.

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

A malformed tracked event is dead-lettered once, by ``analytics.session-activity`` (through
``for_each_event``); the windows pass over it (counted in ``shop_analytics_skipped_total``)
rather than write a second letter for it. ``analytics.rollup`` dead-letters what it cannot
decode of its own topic.

Faust's RocksDB store writes a row to the partition of the *current event*, which a batch
does not have; :func:`in_partition_of` makes the batch's last event of a partition current
while that partition's rows are written.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from faust import current_event
from faust.streams import _current_event
from faust.types import EventT, StreamT
from faust.types.windows import WindowT
from prometheus_client import Counter

from agents.dead_letters import dead_letter, for_each_event
from agents.topics import analytics_topic, orders_topic, shop_topic
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
from tables.replay import REPLAYS_SKIPPED, Position, mark_applied, update_once

__all__ = ["count_purchases", "count_windows", "in_partition_of", "merge_windows",
           "record_session_activity", "rollup_topic"]

#: analytics-rollup ["<window>|<source>"], one partition: partials of windows, as JSON.
rollup_topic = shop_topic("analytics-rollup", partitions=1)

#: Events a batch takes at most, and how long it waits to fill.
BATCH = 5_000
BATCH_WITHIN_S = 0.5
ROLLUP_BATCH = 2_000
ROLLUP_WITHIN_S = 0.5
#: How often the merger drops windows past the retention (s).
SWEEP_EVERY_S = 60.0

NOT_CONFIRMED = frozenset(t for t in ORDER_EVENTS if t != "order_confirmed")
log = logging.getLogger(__name__)
LATE = Counter("shop_analytics_late_total", "Tracked events past the grace period")
SKIPPED = Counter("shop_analytics_skipped_total",
                  "Malformed tracked events the windows pass over (dead-lettered by "
                  "analytics.session-activity)")
#: The windows agent's own work: events taken and seconds spent on them (its capacity).
COUNTED = Counter("shop_analytics_window_events_total", "Tracked events the windows took")
BUSY = Counter("shop_analytics_window_busy_seconds_total",
               "Seconds the windows agent spent counting batches")

#: The source name of the hopping rows: every partition, summed by the merger.
ALL_SOURCES = "all"

_minutes = minute_partials.table
_hops = hop_partials.table
_minute_window = cast(WindowT, _minutes.window)
_hop_window = cast(WindowT, _hops.window)


def _dumps(row: Any) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


@contextmanager
def in_partition_of(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event (table writes go to its partition) for a block."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


# -- Session activity -------------------------------------------------------------------------


async def apply_tracked(event: Tracked, position: Position) -> None:
    """Count ``event`` in its session's activity, once, however often it is delivered."""
    update_once(session_activity, event.session_id, position,
                lambda row: add_activity(row, event))


@app.agent(analytics_topic, name="analytics.session-activity")
async def record_session_activity(stream: StreamT[bytes]) -> None:
    """Consume the analytics topic into the session-activity table."""
    await for_each_event(stream, Tracked, apply_tracked, agent="analytics.session-activity")


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


def count_batch(events: Sequence[EventT]) -> None:
    """Count a batch of the analytics topic in its partitions' window rows; send the rows."""
    grace = settings.analytics_grace
    by_partition: dict[int, list[EventT]] = defaultdict(list)
    for event in events:
        by_partition[event.message.partition].append(event)
    for partition, group in by_partition.items():
        facts = []
        for event in group:
            message = event.message
            try:
                data = json.loads(message.value or b"null")
                if not isinstance(data, dict):
                    raise ValueError("a tracking event is a JSON object")
                fact = tracked_fact(data, message.offset, message.timestamp, grace)
            except Exception as exc:  # analytics.session-activity dead-letters it
                SKIPPED.inc()
                log.debug("analytics.windows skips %s[%s]@%s: %s", message.topic,
                          message.partition, message.offset, exc)
                continue
            if fact.kind == "late":
                LATE.inc()
            facts.append(fact)
        if not facts:
            continue
        topic = group[-1].message.topic
        with in_partition_of(group[-1]):
            sends = count_facts(f"t{partition}", topic, _unique(facts))
        _send_rows(sends)


@app.agent(analytics_topic, name="analytics.windows")
async def count_windows(stream: StreamT[bytes]) -> None:
    """Consume the analytics topic, in batches, into the windowed tables."""
    async for events in cast(Any, stream).take_events(BATCH, within=BATCH_WITHIN_S):
        began = time.perf_counter()
        count_batch(events)  # no awaits: the time is the agent's own
        BUSY.inc(time.perf_counter() - began)
        COUNTED.inc(len(events))


async def apply_confirmed(event: OrderUpdate, position: Position) -> None:
    """Count a confirmed order (and its lines) in its partition's window rows; send them."""
    current = current_event()
    assert current is not None
    order = orders.get(event.order_id) or {}
    facts = purchase_facts(position.offset, event.occurred_at.timestamp(), event.user_id,
                           event.total_cents, order.get("items", ()), event.event_id)
    _send_rows(count_facts(f"o{current.message.partition}", position.topic, facts))


@app.agent(orders_topic, name="analytics.purchases")
async def count_purchases(stream: StreamT[bytes]) -> None:
    """Consume the orders topic's confirmations into the windowed tables."""
    await for_each_event(stream, {"order_confirmed": OrderUpdate}, apply_confirmed,
                         agent="analytics.purchases", skip=NOT_CONFIRMED)


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
    async for events in cast(Any, stream).take_events(ROLLUP_BATCH, within=ROLLUP_WITHIN_S):
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


