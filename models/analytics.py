"""Analytics: tracking events from the storefront and the activity they add up to.

Business rules here are pure functions; the agent in ``agents/analytics.py`` applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.base import Event

__all__ = [
    "COUNTERS", "HOP_SIZE", "HOP_STEP", "MINUTE", "TOP_BY", "TRACKING_TYPES", "WINDOWS", "Fact",
    "Tracked", "add_activities", "add_activity", "fold", "hop_starts", "iso", "merge",
    "minute_of", "purchase_facts", "summarize", "top_products", "tracked_fact", "visitor_of",
    "window_span",
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
    kind = data.get("type")
    if kind not in TRACKING_TYPES:
        raise ValueError(f"type must be one of {', '.join(TRACKING_TYPES)}, not {kind!r}")
    session_id, event_id = data.get("session_id"), data.get("event_id")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty string")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event_id must be a non-empty string")
    raw_at = data.get("occurred_at")
    if not isinstance(raw_at, str):
        raise ValueError("occurred_at must be an ISO 8601 time")
    occurred = datetime.fromisoformat(raw_at)
    if occurred.tzinfo is None:
        raise ValueError("occurred_at must have a time zone")
    user_id, sku = data.get("user_id"), data.get("sku")
    visitor = visitor_of(user_id if isinstance(user_id, str) else None, session_id)
    at = occurred.timestamp()
    if received - at > grace:
        return Fact(offset, received, "late", visitor, event_id=event_id)
    return Fact(offset, at, kind, visitor, sku if isinstance(sku, str) else None,
                event_id=event_id)


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
