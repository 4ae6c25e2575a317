"""models/analytics.py: facts, their fold into window partials, the merge and the answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faust.windows import HoppingWindow, TumblingWindow
from hypothesis import given, settings
from hypothesis import strategies as st

from models.analytics import (
    HOP_SIZE,
    HOP_STEP,
    Fact,
    fold,
    hop_starts,
    merge,
    minute_of,
    purchase_facts,
    summarize,
    top_products,
    tracked_fact,
    visitor_of,
    window_span,
)

T0 = datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)

KINDS = ("product_view", "add_to_cart", "remove_from_cart", "page_view", "search", "purchase",
         "purchase_line", "late")

facts = st.builds(
    Fact,
    offset=st.integers(0, 10_000),
    at=st.floats(T0.timestamp(), T0.timestamp() + 3600),
    kind=st.sampled_from(KINDS),
    visitor=st.sampled_from(["u:1", "u:2", "s:a", "s:b"]),
    sku=st.none() | st.sampled_from(["A", "B", "C"]),
    quantity=st.integers(1, 5),
    cents=st.integers(0, 10_000),
)


def without_sets_order(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (sorted(v) if isinstance(v, list) else v) for k, v in row.items()}


@settings(max_examples=200, deadline=None)
@given(st.lists(facts, max_size=40), st.integers(0, 40))
def test_folding_in_batches_equals_folding_at_once(all_facts: list[Fact], cut: int) -> None:
    at_once = fold(None, all_facts, detailed=True)
    in_two = fold(fold(None, all_facts[:cut], detailed=True), all_facts[cut:], detailed=True)
    assert without_sets_order(in_two) == without_sets_order(at_once)


@settings(max_examples=200, deadline=None)
@given(st.lists(facts, max_size=40), st.integers(1, 4))
def test_partials_of_any_split_merge_to_the_whole(all_facts: list[Fact], parts: int) -> None:
    partials = [fold(None, all_facts[i::parts], detailed=True) for i in range(parts)]
    merged = merge(partials)
    whole = merge([fold(None, all_facts, detailed=True)])
    assert merged == whole
    # Counting is exact: every view, cart and purchase once.
    assert merged["product_views"] == sum(f.kind == "product_view" for f in all_facts)
    assert merged["purchases"] == sum(f.kind == "purchase" for f in all_facts)
    assert merged["revenue_cents"] == sum(f.cents for f in all_facts if f.kind == "purchase")
    assert merged["late"] == sum(f.kind == "late" for f in all_facts)


@settings(max_examples=100, deadline=None)
@given(st.lists(facts, max_size=30))
def test_visitor_sets_are_duplicate_proof(all_facts: list[Fact]) -> None:
    once = fold(None, all_facts, detailed=True)
    twice = fold(once, all_facts, detailed=True)
    for name in ("visitors", "viewers", "carters", "buyers"):
        assert twice[name] == once[name]
    assert set(once["viewers"]) == {f.visitor for f in all_facts if f.kind == "product_view"}


def test_a_partial_without_details_keeps_counters_only() -> None:
    row = fold(None, [Fact(1, 0, "product_view", "s:a", "A")], detailed=False)
    assert row["product_views"] == 1 and "skus" not in row and "visitors" not in row


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 4e9))
def test_windows_match_fausts(at: float) -> None:
    assert [int(r[0]) for r in TumblingWindow(60).ranges(at)] == [minute_of(at)]
    ranges = HoppingWindow(HOP_SIZE, HOP_STEP).ranges(at)
    assert [int(r[0]) for r in ranges] == hop_starts(at)
    assert len(hop_starts(at)) == HOP_SIZE // HOP_STEP
    assert all(start <= at < start + HOP_SIZE for start in hop_starts(at))


def tracked(**overrides: Any) -> dict[str, Any]:
    return {"type": "product_view", "event_id": "e1", "session_id": "sess-1",
            "occurred_at": T0.isoformat(), "sku": "A", **overrides}


def test_an_event_within_grace_counts_at_its_time_a_later_one_as_late() -> None:
    on_time = tracked_fact(tracked(), 7, T0.timestamp() + 299, grace=300)
    assert (on_time.kind, on_time.at, on_time.offset) == ("product_view", T0.timestamp(), 7)
    assert on_time.visitor == "s:sess-1"
    late = tracked_fact(tracked(), 8, T0.timestamp() + 301, grace=300)
    assert (late.kind, late.at) == ("late", T0.timestamp() + 301)
    signed_in = tracked_fact(tracked(user_id="u1"), 9, T0.timestamp(), grace=0)
    assert signed_in.visitor == visitor_of("u1", "sess-1") == "u:u1"


@pytest.mark.parametrize("bad", [
    {"type": "purchase"}, {"session_id": ""}, {"event_id": None},
    {"occurred_at": "2026-05-01T10:00:00"}, {"occurred_at": 12}, {"occurred_at": "soon"},
])
def test_a_malformed_tracking_event_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tracked_fact(tracked(**bad), 1, T0.timestamp(), grace=300)


def test_a_purchase_counts_the_order_and_each_line() -> None:
    got = purchase_facts(3, T0.timestamp(), "u1", 2500, [
        {"sku": "A", "quantity": 2, "unit_price_cents": 1000},
        {"sku": "B", "quantity": 1, "unit_price_cents": 500}], "ev")
    row = fold(None, got, detailed=True)
    assert (row["purchases"], row["revenue_cents"]) == (1, 2500)
    assert row["skus"] == {"A": [0, 0, 2, 2000], "B": [0, 0, 1, 500]}
    assert row["buyers"] == ["u:u1"]


def minute_row(views: int, carts: int, visitors: list[str]) -> dict[str, Any]:
    return {"product_views": views, "add_to_carts": carts, "purchases": 0, "revenue_cents": 0,
            "visitors": visitors, "viewers": visitors, "carters": visitors[:1], "buyers": [],
            "skus": {}}


def test_the_summary_has_one_point_a_minute_and_distinct_visitors() -> None:
    since, until = window_span("10m", T0)
    assert until - since == 600 and until == minute_of(T0.timestamp()) + 60
    minutes = {since: minute_row(2, 1, ["s:a", "s:b"]), until - 60: minute_row(3, 0, ["s:a"])}
    summary = summarize("10m", T0, minutes)
    assert len(summary["series"]) == 10
    assert [p["product_views"] for p in summary["series"]] == [2] + [0] * 8 + [3]
    assert (summary["product_views"], summary["add_to_carts"]) == (5, 1)
    assert summary["active_users"] == 2
    assert summary["funnel"] == {"viewed": 2, "carted": 1, "purchased": 0}
    assert summary["since"] == datetime.fromtimestamp(since, UTC).isoformat()
    with_totals = summarize("10m", T0, minutes, {"product_views": 9})
    assert with_totals["product_views"] == 9 and with_totals["active_users"] == 2


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1m", "10m", "1h", "24h"]),
       st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                    timezones=st.just(UTC)))
def test_window_spans_end_with_the_current_minute(window: str, now: datetime) -> None:
    since, until = window_span(window, now)
    assert since <= now.timestamp() < until and since % 60 == 0
    assert until - since == {"1m": 60, "10m": 600, "1h": 3600, "24h": 86400}[window]
    assert now - timedelta(seconds=until - since) < datetime.fromtimestamp(until, UTC)


def test_top_products_rank_and_sum_categories() -> None:
    figures = {"skus": {"A": [5, 1, 0, 0], "B": [2, 2, 3, 900], "C": [5, 0, 1, 100]}}
    catalog = {"A": {"name": "Alpha", "category": "books"},
               "B": {"name": "Beta", "category": "toys"}}
    top = top_products(figures, catalog, "views", 2)
    assert [p["sku"] for p in top["products"]] == ["A", "C"]
    assert top["products"][1] == {"sku": "C", "name": "C", "category": "unknown", "views": 5,
                                  "add_to_carts": 0, "purchases": 1, "revenue_cents": 100}
    by_revenue = top_products(figures, catalog, "revenue", 10)
    assert [p["sku"] for p in by_revenue["products"]] == ["B", "C", "A"]
    assert [c["category"] for c in by_revenue["categories"]] == ["toys", "unknown", "books"]
    assert sum(c["views"] for c in by_revenue["categories"]) == 12


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["page_view", "search", "add_to_cart"]),
                          st.integers(0, 10_000), st.none() | st.just("u1")),
                min_size=1, max_size=20), st.integers(0, 20))
def test_a_batch_of_activity_equals_one_event_at_a_time(
    seen: list[tuple[str, int, str | None]], cut: int,
) -> None:
    from models.analytics import Tracked, add_activities, add_activity

    events = [(kind, T0 + timedelta(seconds=s), user) for kind, s, user in seen]
    one_by_one: dict[str, Any] | None = None
    for n, (kind, at, user) in enumerate(events):
        one_by_one = add_activity(one_by_one, Tracked(
            type=kind, event_id=f"e{n}", occurred_at=at, session_id="sess-1", user_id=user))
    batched = add_activities(add_activities(None, "sess-1", events[:cut]), "sess-1",
                             events[cut:])
    assert batched == one_by_one
