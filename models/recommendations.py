"""Recommendations: a user's recent behaviour, item-to-item co-occurrence and popularity.

A user's row keeps their recent items (sku and the strongest behaviour seen: view < cart <
purchase) and what they bought. When a behaviour raises the weight of an item in a user's
recent items, the item gains that much popularity, and every pair (item, other recent item)
gains ``min(weights)`` minus what the pair had from this user before: the co-occurrence of
two items is, summed over users, the weaker of the user's two behaviours. Repeating a view
adds nothing; turning a view into a purchase adds the difference. Each item keeps its
strongest ``NEIGHBOUR_LIMIT`` neighbours; the popular list its ``POPULAR_LIMIT`` items.

Candidates for a user score the sum over their recent items of ``weight x co-occurrence``;
what the user bought is never recommended; popular items fill the list below the lowest
co-occurrence score (a new user gets popular items only).

Everything here is pure: rows in, rows and decisions out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.base import Event, event_types

__all__ = [
    "BEHAVIOUR_WEIGHTS",
    "ITEM_EVENTS",
    "NEIGHBOUR_LIMIT",
    "POPULAR_LIMIT",
    "PURCHASED_LIMIT",
    "RECENT_LIMIT",
    "TRACKED_KINDS",
    "BehaviourSeen",
    "ItemDelta",
    "ItemsPaired",
    "add_pairs",
    "derived_id",
    "observe",
    "rank_popular",
    "recent_skus",
    "recommend",
    "similar",
]

#: How much each kind of behaviour tells about interest in an item.
BEHAVIOUR_WEIGHTS: dict[str, int] = {"view": 1, "cart": 3, "purchase": 5}

#: Tracking event types that are behaviour towards an item, and their kind.
TRACKED_KINDS: dict[str, str] = {"product_view": "view", "add_to_cart": "cart"}

RECENT_LIMIT = 20
PURCHASED_LIMIT = 200
NEIGHBOUR_LIMIT = 50
POPULAR_LIMIT = 50

_IDS = uuid.UUID("0c6f3f0e-8d0a-4f7e-9d55-2f1a7c3b9e41")  # namespace of derived event ids

Row = dict[str, Any]
Scored = list[tuple[str, float]]


# -- Events ----------------------------------------------------------------------------------


class BehaviourSeen(Event):
    """A user showed ``kind`` interest in ``skus`` (recommendations topic, keyed by user)."""

    event_type = "behaviour_seen"
    user_id: str
    kind: str
    skus: list[str]


class ItemsPaired(Event):
    """``sku`` gained ``popularity`` and co-occurrence with ``pairs`` (sku -> weight)."""

    event_type = "items_paired"
    sku: str
    popularity: int
    pairs: dict[str, int]


ITEM_EVENTS = event_types(ItemsPaired)


def derived_id(source_event_id: str, *parts: str) -> str:
    """Return the id of an event derived from another: the same on every redelivery."""
    return uuid.uuid5(_IDS, "/".join((source_event_id, *parts))).hex


# -- A user's behaviour ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemDelta:
    """What one behaviour adds to an item: popularity and co-occurrence with other items."""

    sku: str
    popularity: int
    pairs: dict[str, int] = field(default_factory=dict)


def observe(row: Mapping[str, Any] | None, user_id: str, kind: str,
            skus: Iterable[str]) -> tuple[Row, list[ItemDelta]]:
    """Return the user's row with ``kind`` behaviour on ``skus`` added, and the item deltas."""
    weight = BEHAVIOUR_WEIGHTS[kind]
    current = dict(row or {})
    recent: list[list[Any]] = [list(entry) for entry in current.get("recent", ())]
    purchased: list[str] = list(current.get("purchased", ()))
    deltas: list[ItemDelta] = []
    for sku in dict.fromkeys(skus):
        if kind == "purchase":
            purchased = _last([s for s in purchased if s != sku], sku, PURCHASED_LIMIT)
        old = next((w for s, w in recent if s == sku), 0)
        if weight <= old:
            continue
        pairs = {other: min(weight, w) - min(old, w) for other, w in recent if other != sku}
        deltas.append(ItemDelta(sku, weight - old, {o: d for o, d in pairs.items() if d > 0}))
        recent = _last([[s, w] for s, w in recent if s != sku], [sku, weight], RECENT_LIMIT)
    return {**current, "user_id": user_id, "recent": recent, "purchased": purchased}, deltas


def _last(entries: list[Any], newest: Any, limit: int) -> list[Any]:
    """Return ``entries`` with ``newest`` appended, keeping the last ``limit``."""
    return [*entries, newest][-limit:]


# -- Items -----------------------------------------------------------------------------------


def add_pairs(row: Mapping[str, Any] | None, sku: str, popularity: int,
              pairs: Mapping[str, int]) -> Row:
    """Return an item's row with ``popularity`` and co-occurrence ``pairs`` added (bounded)."""
    current = dict(row or {})
    neighbours = dict(current.get("neighbours", {}))
    for other, weight in pairs.items():
        if other != sku and weight > 0:
            neighbours[other] = neighbours.get(other, 0) + weight
    return {**current, "sku": sku, "popularity": current.get("popularity", 0) + popularity,
            "neighbours": _strongest(neighbours, NEIGHBOUR_LIMIT)}


def rank_popular(row: Mapping[str, Any] | None, sku: str, total: int) -> Row:
    """Return the popular list with ``sku`` at its new ``total`` (the top POPULAR_LIMIT)."""
    items = dict((row or {}).get("items", {}))
    items[sku] = total
    return {**(row or {}), "items": _strongest(items, POPULAR_LIMIT)}


def _strongest(weights: Mapping[str, int], limit: int) -> dict[str, int]:
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return dict(ranked)


# -- Answers ---------------------------------------------------------------------------------


def recommend(behaviour: Mapping[str, Any] | None,
              neighbours: Mapping[str, Mapping[str, int]],
              popular: Mapping[str, int], limit: int) -> Scored:
    """Return up to ``limit`` (sku, score) for a user, best first, never an item they bought.

    ``neighbours`` maps each of the user's recent items to its co-occurring items.
    """
    behaviour = behaviour or {}
    bought = set(behaviour.get("purchased", ()))
    scores: dict[str, float] = {}
    for sku, weight in behaviour.get("recent", ()):
        for other, together in neighbours.get(sku, {}).items():
            if other not in bought and together > 0:
                scores[other] = scores.get(other, 0.0) + weight * together
    ranked = _ranked(scores)[:limit]
    floor = ranked[-1][1] if ranked else 2.0
    top = max(popular.values(), default=0)
    taken = {sku for sku, _ in ranked}
    fillers = {sku: floor * count / (2 * top) for sku, count in popular.items()
               if count > 0 and sku not in bought and sku not in taken}
    return ranked + _ranked(fillers)[:limit - len(ranked)]


def similar(item: Mapping[str, Any] | None, limit: int) -> Scored:
    """Return up to ``limit`` (sku, co-occurrence) of the items seen with an item, best first."""
    neighbours: Mapping[str, int] = (item or {}).get("neighbours", {})
    return _ranked({sku: float(weight) for sku, weight in neighbours.items()})[:limit]


def _ranked(scores: Mapping[str, float]) -> Scored:
    return sorted(((sku, round(score, 6)) for sku, score in scores.items()),
                  key=lambda kv: (-kv[1], kv[0]))


def recent_skus(behaviour: Mapping[str, Any] | None) -> Sequence[str]:
    """Return the skus of a user's recent items."""
    return [sku for sku, _ in (behaviour or {}).get("recent", ())]
