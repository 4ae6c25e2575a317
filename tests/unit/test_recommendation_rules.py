"""models/recommendations.py: behaviour, co-occurrence, popularity and scoring."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import decode_event
from models.recommendations import (
    BEHAVIOUR_WEIGHTS,
    ITEM_EVENTS,
    NEIGHBOUR_LIMIT,
    POPULAR_LIMIT,
    RECENT_LIMIT,
    BehaviourSeen,
    ItemsPaired,
    add_pairs,
    derived_id,
    observe,
    rank_popular,
    recommend,
    similar,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
SKUS = [f"S{i}" for i in range(12)]


class Model:
    """The item side as the agents keep it: item rows and the popular list."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.popular: dict[str, Any] = {}

    def apply(self, deltas: Any) -> None:
        for delta in deltas:
            row = add_pairs(self.items.get(delta.sku), delta.sku, delta.popularity, delta.pairs)
            self.items[delta.sku] = row
            for other, weight in delta.pairs.items():
                self.items[other] = add_pairs(self.items.get(other), other, 0,
                                              {delta.sku: weight})
            self.popular = rank_popular(self.popular, delta.sku, row["popularity"])

    def neighbours(self, behaviour: Mapping[str, Any]) -> dict[str, dict[str, int]]:
        return {sku: self.items.get(sku, {}).get("neighbours", {})
                for sku, _ in behaviour.get("recent", ())}


def play(model: Model, users: dict[str, dict[str, Any]], user: str, kind: str,
         skus: list[str]) -> None:
    users[user], deltas = observe(users.get(user), user, kind, skus)
    model.apply(deltas)


def test_weights_rank_view_below_cart_below_purchase() -> None:
    assert BEHAVIOUR_WEIGHTS["view"] < BEHAVIOUR_WEIGHTS["cart"] < BEHAVIOUR_WEIGHTS["purchase"]


def test_a_repeated_view_adds_nothing_and_a_purchase_adds_the_difference() -> None:
    row, first = observe(None, "u1", "view", ["A"])
    assert [(d.sku, d.popularity, d.pairs) for d in first] == [("A", 1, {})]
    row, second = observe(row, "u1", "view", ["B"])
    assert [(d.sku, d.popularity, d.pairs) for d in second] == [("B", 1, {"A": 1})]
    row, again = observe(row, "u1", "view", ["A"])
    assert again == []
    row, bought = observe(row, "u1", "purchase", ["A"])
    assert [(d.sku, d.popularity, d.pairs) for d in bought] == [("A", 4, {})]  # min(5, 1) = 1
    assert row["purchased"] == ["A"]
    assert row["recent"] == [["B", 1], ["A", 5]]


def test_an_order_pairs_its_lines_with_each_other() -> None:
    _, deltas = observe(None, "u1", "purchase", ["A", "B", "C"])
    assert [(d.sku, d.pairs) for d in deltas] == [("A", {}), ("B", {"A": 5}),
                                                  ("C", {"A": 5, "B": 5})]


def test_recent_items_are_bounded() -> None:
    row: dict[str, Any] | None = None
    for i in range(RECENT_LIMIT + 5):
        row, _ = observe(row, "u1", "view", [f"S{i}"])
    assert row is not None
    assert len(row["recent"]) == RECENT_LIMIT
    assert row["recent"][-1] == [f"S{RECENT_LIMIT + 4}", 1]


def test_neighbours_and_popular_are_bounded() -> None:
    row = add_pairs(None, "A", 1, {f"N{i}": i + 1 for i in range(NEIGHBOUR_LIMIT + 10)})
    assert len(row["neighbours"]) == NEIGHBOUR_LIMIT
    assert min(row["neighbours"].values()) == 11
    popular: dict[str, Any] = {}
    for i in range(POPULAR_LIMIT + 10):
        popular = rank_popular(popular, f"P{i}", i + 1)
    assert len(popular["items"]) == POPULAR_LIMIT
    assert "P0" not in popular["items"]


def test_a_user_gets_the_items_others_saw_with_theirs() -> None:
    model, users = Model(), {}
    for other in ("o1", "o2", "o3"):
        play(model, users, other, "view", ["BOOK-1", "BOOK-2", "BOOK-3"])
    for other in ("o4", "o5", "o6", "o7"):
        play(model, users, other, "view", ["TOY-1", "TOY-2"])
    play(model, users, "me", "view", ["BOOK-1"])
    ranked = recommend(users["me"], model.neighbours(users["me"]),
                       model.popular["items"], 4)
    assert [sku for sku, _ in ranked[:2]] == ["BOOK-2", "BOOK-3"]
    assert ranked[0][1] > ranked[2][1]  # the toys only fill in, below the books


def test_a_new_user_gets_popular_items() -> None:
    popular = {"A": 10, "B": 30, "C": 20}
    assert [sku for sku, _ in recommend(None, {}, popular, 2)] == ["B", "C"]
    assert recommend(None, {}, {}, 5) == []


def test_similar_lists_the_strongest_neighbours() -> None:
    row = add_pairs(None, "A", 0, {"B": 2, "C": 7, "D": 1})
    assert similar(row, 2) == [("C", 7.0), ("B", 2.0)]
    assert similar(None, 3) == []


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_id("e1", "A") == derived_id("e1", "A")
    assert derived_id("e1", "A") != derived_id("e1", "B")


def test_the_events_round_trip() -> None:
    paired = ItemsPaired(type="items_paired", event_id="e1", occurred_at=T0, sku="A",
                         popularity=3, pairs={"B": 2})
    again = decode_event(ITEM_EVENTS, paired.dumps())
    assert again.pairs == {"B": 2}
    seen = BehaviourSeen(type="behaviour_seen", event_id="e2", occurred_at=T0, user_id="u1",
                         kind="view", skus=["A"])
    assert decode_event(BehaviourSeen, seen.dumps()).skus == ["A"]


behaviours = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]),
              st.sampled_from(sorted(BEHAVIOUR_WEIGHTS)),
              st.lists(st.sampled_from(SKUS), min_size=1, max_size=3)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(behaviours, st.sampled_from(["u1", "u2", "u3", "u4", "new"]), st.integers(1, 15))
def test_recommendations_never_hold_a_bought_item_and_are_bounded_and_sorted(
    seen: list[tuple[str, str, list[str]]], user: str, limit: int,
) -> None:
    model, users = Model(), {}
    for who, kind, skus in seen:
        play(model, users, who, kind, skus)
    behaviour = users.get(user)
    ranked = recommend(behaviour, model.neighbours(behaviour or {}),
                       model.popular.get("items", {}), limit)
    skus = [sku for sku, _ in ranked]
    bought = set((behaviour or {}).get("purchased", ()))
    assert not bought & set(skus)
    assert len(ranked) <= limit
    assert len(set(skus)) == len(skus)
    assert all(score >= 0 for _, score in ranked)
    assert [score for _, score in ranked] == sorted((s for _, s in ranked), reverse=True)
    if behaviour is None:  # a new user: the most popular items, in order
        popular = model.popular.get("items", {})
        best = sorted(popular, key=lambda s: (-popular[s], s))[:limit]
        assert skus == best
    for row in model.items.values():
        assert len(row["neighbours"]) <= NEIGHBOUR_LIMIT
        assert row["sku"] not in row["neighbours"]
        assert all(weight > 0 for weight in row["neighbours"].values())


@settings(max_examples=200, deadline=None)
@given(behaviours)
def test_co_occurrence_is_symmetric_while_unbounded(
    seen: list[tuple[str, str, list[str]]],
) -> None:
    model, users = Model(), {}
    for who, kind, skus in seen:
        play(model, users, who, kind, skus)
    for sku, row in model.items.items():
        for other, weight in row["neighbours"].items():
            assert model.items[other]["neighbours"].get(sku) == weight
