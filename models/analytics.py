"""Analytics: tracking events from the storefront and the activity they add up to.

Business rules here are pure functions; the agent in ``agents/analytics.py`` applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.base import SCHEMA_VERSION, Event, event_from_data

__all__ = [
    "COUNTERS", "HOP_SIZE", "HOP_STEP", "MAX_PACKED", "MINUTE", "PACKED_TYPE", "TOP_BY",
    "TRACKING_TYPES", "WINDOWS", "Fact", "Tracked", "TrackedFields", "add_activities",
    "add_activity", "fact_of", "fold", "hop_starts", "iso", "merge", "minute_of", "pack_tracked",
    "purchase_facts", "read_tracked", "summarize", "top_products", "tracked_fact",
    "tracked_items", "visitor_of", "window_span",
]

#: The kinds of behaviour the frontend tracks.
TRACKING_TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart")


class Tracked(Event):
    """One tracked behaviour of a browsing session (``type`` is one of TRACKING_TYPES)."""

    session_id: str
    user_id: str | None = None
    sku: str | None = None
    query: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TRACKING_TYPES:
            raise ValueError(f"type must be one of {', '.join(TRACKING_TYPES)}, not {self.type!r}")
        if not self.session_id:
            raise ValueError("session_id must not be empty")


#: The ``type`` of a packed message: many tracked events of one partition in one message.
PACKED_TYPE = "tracked_batch"
#: The most events a packed message may hold.
MAX_PACKED = 5_000


def pack_tracked(batch_id: str, events: Sequence[bytes], *, occurred_at: str) -> bytes:
    """Return one analytics-topic message holding ``events`` (each a Tracked event's JSON).

    The events keep their own ids, sessions and times; the pack has an id of its own (the
    replay guard's unit) and the time it was packed. Every event must belong to the
    partition the pack is sent to (the partition of its session).
    """
    if not 0 < len(events) <= MAX_PACKED:
        raise ValueError(f"a pack holds 1 to {MAX_PACKED} events, not {len(events)}")
    head = (f'{{"type":"{PACKED_TYPE}","event_id":"{batch_id}",'
            f'"occurred_at":"{occurred_at}","events":[').encode()
    return head + b",".join(events) + b"]}"


def tracked_items(data: Mapping[str, Any]) -> list[Any]:
    """Return the tracking events a decoded analytics message holds, as JSON values.

    A message is one event (a Tracked object: ``[data]``) or a pack (``type`` is
    PACKED_TYPE: its ``events``). Raise ValueError for a pack without events; the items
    themselves are checked one by one by the caller, so one bad event costs only itself.
    """
    if data.get("type") != PACKED_TYPE:
        return [data]
    events = data.get("events")
    if not isinstance(events, list) or not events:
        raise ValueError(f"a {PACKED_TYPE} must hold a non-empty list of events")
    if len(events) > MAX_PACKED:
        raise ValueError(f"a {PACKED_TYPE} holds at most {MAX_PACKED} events, not {len(events)}")
    batch_id = data.get("event_id")
    if not isinstance(batch_id, str) or not batch_id:
        raise ValueError(f"a {PACKED_TYPE} must have an event_id")
    return events


@dataclass(frozen=True, slots=True)
class TrackedFields:
    """A tracking event's fields, read from its JSON without building a Faust record.

    What :func:`read_tracked` returns: the same fields, values and checks as a
    :class:`Tracked` (``event_from_data(Tracked, data)``), at a fifth of the cost, for the
    analytics agent, which reads tens of thousands a second.
    """

    type: str
    event_id: str
    occurred_at: datetime
    session_id: str
    correlation_id: str = ""
    user_id: str | None = None
    sku: str | None = None
    query: str | None = None
    path: str | None = None


#: The ISO 8601 times read without Faust: what ``datetime.isoformat()`` writes, with a zone.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?(Z|[+-]\d{2}:\d{2})\Z")
_TEXT_OR_NONE = ("user_id", "sku", "query", "path")


def read_tracked(data: Mapping[str, Any]) -> TrackedFields:
    """Return a tracking event's fields; raise EventDecodeError as ``event_from_data`` would.

    The common shape (what this shop's producers write) is checked here; anything else is
    left to ``event_from_data(Tracked, data)``, so an event is accepted, and refused with the
    same message, exactly as the Faust record would be.
    """
    kind, event_id, session_id = data.get("type"), data.get("event_id"), data.get("session_id")
    at, correlation_id = data.get("occurred_at"), data.get("correlation_id", "")
    version = data.get("schema_version", SCHEMA_VERSION)
    if (kind in TRACKING_TYPES and isinstance(event_id, str) and event_id
            and isinstance(session_id, str) and session_id and isinstance(correlation_id, str)
            and type(version) is int and isinstance(at, str) and _ISO_TIME.match(at)
            and all(isinstance(data.get(name), str | None) for name in _TEXT_OR_NONE)):
        return TrackedFields(kind, event_id, datetime.fromisoformat(at), session_id,
                             correlation_id, data.get("user_id"), data.get("sku"),
                             data.get("query"), data.get("path"))
    record = event_from_data(Tracked, dict(data))
    return TrackedFields(record.type, record.event_id, record.occurred_at, record.session_id,
                         record.correlation_id, record.user_id, record.sku, record.query,
                         record.path)


def add_activity(activity: Mapping[str, Any] | None, event: Tracked) -> dict[str, Any]:
    """Return a session's activity with ``event`` counted in."""
    current = dict(activity or {})
    counts = dict(current.get("counts", {}))
    counts[event.type] = counts.get(event.type, 0) + 1
    at = event.occurred_at.astimezone(UTC)
    first_seen = min(_time(current.get("first_seen"), at), at)
    last_seen = max(_time(current.get("last_seen"), at), at)
    return {
        **current,
        "session_id": event.session_id,
        "user_id": event.user_id or current.get("user_id"),
        "events": current.get("events", 0) + 1,
        "counts": counts,
        "first_seen": first_seen.isoformat(),
        "last_seen": last_seen.isoformat(),
    }


def _time(stored: str | None, default: datetime) -> datetime:
    return datetime.fromisoformat(stored) if stored else default


# -- Windowed analytics: facts, their fold into window partials, and the answers ------------
#
# A *fact* is one countable thing that happened at a minute: a tracked behaviour, a purchase
# of an order, one line of a purchase, or an event that came too late. A *partial* is what
# one source (an analytics or orders partition) counted in one window; partials of the same
# window from every source *merge* into the window's figures. Counters add; the sets of
# visitors (who was active, who viewed, carted, bought) are unions, so active users and the
# funnel are exact distinct counts however the work is split, and applying the same fact
# twice to a set changes nothing.

#: Window spans the API answers for, in minutes.
WINDOWS = {"1m": 1, "10m": 10, "1h": 60, "24h": 1440}
#: The hopping window's size and step (s), and the tumbling window's size.
HOP_SIZE = 600
HOP_STEP = 60
MINUTE = 60
#: What ``by`` may sort the top products by, and the counter each names.
TOP_BY = {"views": "views", "carts": "add_to_carts", "purchases": "purchases",
          "revenue": "revenue_cents"}
#: Counters of a partial and the fact kinds that raise them by one.
COUNTED = {"product_view": "product_views", "add_to_cart": "add_to_carts",
           "remove_from_cart": "removes", "page_view": "page_views", "search": "searches"}
COUNTERS = ("product_views", "add_to_carts", "removes", "page_views", "searches", "purchases",
            "revenue_cents", "late")
SETS = ("visitors", "viewers", "carters", "buyers")
#: Per-sku counters: [views, add_to_carts, purchased units, revenue_cents].


@dataclass(frozen=True, slots=True)
class Fact:
    """One countable thing at ``at`` (epoch seconds) from the source offset ``offset``.

    ``kind`` is a tracking type, ``purchase`` (an order: ``cents`` is its total),
    ``purchase_line`` (``quantity`` units of ``sku`` for ``cents``) or ``late`` (an event
    past the grace period, counted at its arrival only).
    """

    offset: int
    at: float
    kind: str
    visitor: str
    sku: str | None = None
    quantity: int = 0
    cents: int = 0
    event_id: str = ""


def minute_of(at: float) -> int:
    """Return the start (epoch seconds) of the minute ``at`` falls in."""
    return int(at // MINUTE) * MINUTE


def hop_starts(at: float) -> list[int]:
    """Return the starts of the hopping windows (HOP_SIZE every HOP_STEP) holding ``at``."""
    last = int(at // HOP_STEP) * HOP_STEP
    return list(range(last - HOP_SIZE + HOP_STEP, last + 1, HOP_STEP))


def visitor_of(user_id: str | None, session_id: str) -> str:
    """Return who a behaviour is counted for: the user when signed in, else the session."""
    return f"u:{user_id}" if user_id else f"s:{session_id}"


def tracked_fact(data: Mapping[str, Any], offset: int, received: float, grace: float) -> Fact:
    """Return the fact of one decoded tracking event (JSON object); raise ValueError if bad.

    ``received`` is when the broker got it (epoch s): an event that happened more than
    ``grace`` seconds before that is ``late`` and counted at ``received`` only.
    """
    return fact_of(read_tracked(data), offset, received, grace)


def fact_of(event: TrackedFields, offset: int, received: float, grace: float) -> Fact:
    """Return the fact of a tracking event read by :func:`read_tracked` (see tracked_fact)."""
    visitor = visitor_of(event.user_id, event.session_id)
    at = event.occurred_at.timestamp()
    if received - at > grace:
        return Fact(offset, received, "late", visitor, event_id=event.event_id)
    return Fact(offset, at, event.type, visitor, event.sku, event_id=event.event_id)


def purchase_facts(offset: int, at: float, user_id: str, total_cents: int,
                   lines: Sequence[Mapping[str, Any]], event_id: str) -> list[Fact]:
    """Return the facts of a confirmed order: the purchase and one per line."""
    visitor = visitor_of(user_id, "")
    facts = [Fact(offset, at, "purchase", visitor, cents=total_cents, event_id=event_id)]
    for line in lines:
        quantity = int(line["quantity"])
        facts.append(Fact(offset, at, "purchase_line", visitor, str(line["sku"]), quantity,
                          quantity * int(line.get("unit_price_cents", 0)), event_id))
    return facts


def fold(partial: Mapping[str, Any] | None, facts: Iterable[Fact], *,
         detailed: bool) -> dict[str, Any]:
    """Return ``partial`` with ``facts`` counted in (per sku and visitor sets if ``detailed``)."""
    row: dict[str, Any] = dict(partial or {})
    counts = {name: row.get(name, 0) for name in COUNTERS}
    skus: dict[str, list[int]] = dict(row.get("skus", {})) if detailed else {}
    sets = {name: set(row.get(name, ())) for name in SETS} if detailed else {}
    for fact in facts:
        kind = fact.kind
        counter = COUNTED.get(kind)
        if counter is not None:
            counts[counter] += 1
        elif kind == "purchase":
            counts["purchases"] += 1
            counts["revenue_cents"] += fact.cents
        elif kind == "late":
            counts["late"] += 1
        if not detailed or kind == "late":
            continue
        if kind == "purchase":
            sets["buyers"].add(fact.visitor)
            continue
        sets["visitors"].add(fact.visitor)
        if kind == "product_view":
            sets["viewers"].add(fact.visitor)
        elif kind == "add_to_cart":
            sets["carters"].add(fact.visitor)
        if fact.sku is None or kind not in ("product_view", "add_to_cart", "purchase_line"):
            continue
        figures = list(skus.get(fact.sku) or (0, 0, 0, 0))
        if kind == "product_view":
            figures[0] += 1
        elif kind == "add_to_cart":
            figures[1] += 1
        else:
            figures[2] += fact.quantity
            figures[3] += fact.cents
        skus[fact.sku] = figures
    row.update(counts)
    if detailed:
        row["skus"] = skus
        row.update({name: sorted(members) for name, members in sets.items()})
    return row


def merge(partials: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the figures of several partials of one window (or of several windows) together.

    Counters add, per-sku counters add, visitor sets unite.
    """
    counts = dict.fromkeys(COUNTERS, 0)
    skus: dict[str, list[int]] = {}
    sets: dict[str, set[str]] = {name: set() for name in SETS}
    for partial in partials:
        for name in COUNTERS:
            counts[name] += partial.get(name, 0)
        for sku, figures in partial.get("skus", {}).items():
            known = skus.get(sku)
            skus[sku] = list(figures) if known is None else [
                a + b for a, b in zip(known, figures, strict=True)]
        for name in SETS:
            sets[name].update(partial.get(name, ()))
    return {**counts, "skus": skus, **{name: sorted(members) for name, members in sets.items()}}


def window_span(window: str, now: datetime) -> tuple[int, int]:
    """Return (since, until) in epoch seconds: ``window`` ending with the current minute."""
    until = minute_of(now.timestamp()) + MINUTE
    return until - WINDOWS[window] * MINUTE, until


def iso(epoch: float) -> str:
    """Return epoch seconds as ISO 8601 UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def summarize(window: str, now: datetime, minutes: Mapping[int, Mapping[str, Any]],
              totals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the summary of ``window`` from its minutes' merged figures (start -> figures).

    ``totals`` (the hopping window's figures, when the window is one) replaces the sum of the
    minutes' counters; visitor counts always come from the minutes' sets.
    """
    since, until = window_span(window, now)
    rows = [minutes.get(start) or {} for start in range(since, until, MINUTE)]
    whole = merge(rows)
    counted = totals if totals is not None else whole
    series = [{"at": iso(start), **{name: row.get(name, 0) for name in SERIES}}
              for start, row in zip(range(since, until, MINUTE), rows, strict=True)]
    return {
        "window": window, "since": iso(since), "until": iso(until),
        **{name: counted.get(name, 0) for name in SERIES},
        "active_users": len(whole["visitors"]),
        "funnel": {"viewed": len(whole["viewers"]), "carted": len(whole["carters"]),
                   "purchased": len(whole["buyers"])},
        "series": series,
    }


#: The counters of the summary and of each minute of its series.
SERIES = ("product_views", "add_to_carts", "purchases", "revenue_cents")


def top_products(figures: Mapping[str, Any], products: Mapping[str, Mapping[str, Any]],
                 by: str, limit: int) -> dict[str, list[dict[str, Any]]]:
    """Return the top ``limit`` products by ``by`` and every category's figures.

    ``products`` maps sku -> catalog row (name, category); an unknown sku's category is
    ``"unknown"``.
    """
    field = TOP_BY[by]
    rows = []
    categories: dict[str, dict[str, Any]] = {}
    for sku, counts in figures.get("skus", {}).items():
        product = products.get(sku) or {}
        category = product.get("category") or "unknown"
        row = {"sku": sku, "name": product.get("name") or sku, "category": category,
               **dict(zip(SKU_FIELDS_OUT, counts, strict=True))}
        rows.append(row)
        total = categories.setdefault(category, {"category": category,
                                                 **dict.fromkeys(SKU_FIELDS_OUT, 0)})
        for name in SKU_FIELDS_OUT:
            total[name] += row[name]
    rows.sort(key=lambda r: (-r[field], r["sku"]))
    ranked = sorted(categories.values(), key=lambda c: (-c[field], c["category"]))
    return {"products": rows[:limit], "categories": ranked}


#: The names of the per-sku counters in the API.
SKU_FIELDS_OUT = ("views", "add_to_carts", "purchases", "revenue_cents")


def add_activities(activity: Mapping[str, Any] | None, session_id: str,
                   seen: Sequence[tuple[str, datetime, str | None]]) -> dict[str, Any]:
    """Return a session's activity with ``seen`` (type, time, user id) events counted in.

    The same as :func:`add_activity` once per event, in one step (for a batch).
    """
    current = dict(activity or {})
    counts = dict(current.get("counts", {}))
    first = _time(current.get("first_seen"), seen[0][1]) if seen else None
    last = _time(current.get("last_seen"), seen[0][1]) if seen else None
    user_id = current.get("user_id")
    for kind, at, user in seen:
        counts[kind] = counts.get(kind, 0) + 1
        at = at.astimezone(UTC)
        first, last = min(first or at, at), max(last or at, at)
        user_id = user or user_id
    return {
        **current,
        "session_id": session_id,
        "user_id": user_id,
        "events": current.get("events", 0) + len(seen),
        "counts": counts,
        "first_seen": first.isoformat() if first else current.get("first_seen"),
        "last_seen": last.isoformat() if last else current.get("last_seen"),
    }
