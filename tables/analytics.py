"""Analytics tables: activity per session, window partials per source, and their merged copy.

The windowed figures flow through three tables (see agents/analytics.py):

- ``minute_partials`` (tumbling 1 minute) and ``hop_partials`` (hopping 10 minutes every
  minute), Faust windowed tables kept 25 hours, keyed by *source* (``t<partition>`` for the
  analytics topic, ``o<partition>`` for the orders topic): what each partition counted in each
  window. Written only while processing an event of that partition (so the row lives in the
  partition), under the replay guard; values are JSON bytes (``value_type=bytes``: the
  agent serializes a row once and sends the same bytes on).
- ``rollup_sources`` (one partition): the newest partial of every (window, source), written by
  the one agent of the one-partition ``analytics-rollup`` topic.
- ``analytics_windows`` (global): each window's figures, all sources merged, on every worker;
  the views read only this copy, so any worker answers completely.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

from app import app

__all__ = ["RETENTION", "analytics_windows", "hop_partials", "minute_partials",
           "public_view", "read_window", "rollup_sources", "session_activity", "window_key"]

#: How long window rows are kept (the API answers up to 24 hours back).
RETENTION = timedelta(hours=25)

#: session id -> {session_id, user_id, events, counts{type: n}, first_seen, last_seen, _applied}
session_activity = app.Table(
    "session-activity",
    key_type=str,
    help="Activity per browsing session, from the analytics topic.",
)

#: (source, (start, end)) -> JSON partial (models.analytics.fold, detailed) with _applied.
minute_partials = app.Table(
    "analytics-minutes", value_type=bytes,
    help="What each source partition counted in each minute (tumbling 1 minute).",
).tumbling(60, expires=RETENTION)

#: ("all", (start, end)) -> JSON counters of the window, all partitions (derived).
hop_partials = app.Table(
    "analytics-10m", value_type=bytes, partitions=1,
    help="Every 10 minutes' counters, all partitions (hopping, every minute).",
).hopping(600, 60, expires=RETENTION)

#: "1m:<start>|<source>" -> the newest JSON partial of that source in that minute;
#: "1m:<start>" -> {offsets: {source: offset}, counters: {...}} (the minute merged).
rollup_sources = app.Table(
    "analytics-rollup", key_type=str, value_type=bytes, partitions=1,
    help="The newest partial of every window and source (the merger's, one partition).",
)

#: "<1m|10m>:<start>" -> JSON figures of the window, all sources merged, with per-source
#: counters under "sources". A copy on every worker for reading, never read to update.
analytics_windows = app.GlobalTable(
    "analytics-windows", key_type=str, value_type=bytes, partitions=1,
    recovery_buffer_size=1,
    help="Every window's merged figures, on every worker (the views read this).",
)


def window_key(kind: str, start: float) -> str:
    """Return the key of a window: ``1m:<start>`` or ``10m:<start>`` (epoch seconds)."""
    return f"{kind}:{int(start)}"


#: Parsed rows of the copy by key, with the bytes they were parsed from (a window's row stops
#: changing once its minute is past the grace period, so most reads parse nothing).
_parsed: dict[str, tuple[bytes, dict[str, Any]]] = {}
PARSED_LIMIT = 4096


def read_window(kind: str, start: float) -> dict[str, Any] | None:
    """Return the merged figures of a window from this worker's copy (None: nothing yet).

    The row is shared with other readers: do not change it.
    """
    key = window_key(kind, start)
    raw = analytics_windows.get(key)
    if not raw:
        return None
    known = _parsed.get(key)
    if known is not None and known[0] == raw:
        return known[1]
    row: dict[str, Any] = json.loads(raw)
    if len(_parsed) >= PARSED_LIMIT:
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another reader's
            del _parsed[next(iter(_parsed))]
    _parsed[key] = (raw, row)
    return row


def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """Return a row without its bookkeeping fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
