"""Sales reports: per-partition counts, the newest count per partition wins, popularity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.base import decode_event
from models.reports import (
    REPORT_EVENTS,
    SalesCounted,
    count_notice,
    daily_report,
    day_of,
    day_totals,
    merge_count,
    popular_products,
    window_days,
)

DAY = "2026-03-14"


def counted(partition: int, offset: int, row: dict[str, Any]) -> SalesCounted:
    return SalesCounted.new(day=DAY, partition=partition, offset=offset, **row)


def test_the_day_is_the_utc_day() -> None:
    late_in_new_york = datetime(2026, 3, 14, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert day_of(late_in_new_york) == "2026-03-15"


def test_a_partition_counts_orders_cents_and_units_by_status() -> None:
    row = count_notice(None, "confirmed", 3000, [("A", 2), ("B", 1)], was_confirmed=True)
    row = count_notice(row, "confirmed", 1000, [("A", 1)], was_confirmed=True)
    row = count_notice(row, "rejected", 500, [("C", 5)], was_confirmed=False)
    assert row == {"statuses": {"confirmed": {"orders": 2, "cents": 4000},
                                "rejected": {"orders": 1, "cents": 500}},
                   "units": {"A": 3, "B": 1}}
    row = count_notice(row, "cancelled", 1000, [("A", 1)], was_confirmed=True)
    assert row["units"] == {"A": 2, "B": 1}
    row = count_notice(row, "cancelled", 700, [("B", 1)], was_confirmed=False)
    assert row["units"] == {"A": 2, "B": 1}, "an order cancelled before it was paid sold nothing"


def test_the_day_sums_each_partitions_newest_count() -> None:
    first = count_notice(None, "confirmed", 1000, [("A", 1)], was_confirmed=True)
    second = count_notice(first, "confirmed", 2000, [("B", 2)], was_confirmed=True)
    other = count_notice(None, "expired", 900, [("A", 1)], was_confirmed=False)
    day: dict[str, Any] | None = None
    for event in (counted(0, 10, second), counted(0, 4, first), counted(3, 7, other),
                  counted(0, 10, second)):
        day = merge_count(day, event)
    totals = day_totals(day)
    assert totals == {"orders_by_status": {"confirmed": {"orders": 2, "cents": 3000},
                                           "expired": {"orders": 1, "cents": 900}},
                      "confirmed_orders": 2, "revenue_cents": 3000,
                      "units_by_sku": {"A": 1, "B": 2}}
    report = daily_report(day, DAY, datetime(2026, 3, 15, 0, 5, tzinfo=UTC))
    assert report["day"] == DAY and report["generated_at"] == "2026-03-15T00:05:00+00:00"


@given(st.permutations(range(6)), st.lists(st.integers(0, 5), max_size=6))
def test_any_delivery_order_and_repeats_give_the_newest_counts(order: list[int],
                                                               repeats: list[int]) -> None:
    rows: list[dict[str, Any]] = []
    row: dict[str, Any] | None = None
    for n in range(6):
        row = count_notice(row, "confirmed", 100 * (n + 1), [("A", 1)], was_confirmed=True)
        rows.append(row)
    day: dict[str, Any] | None = None
    for index in [*order, *repeats]:
        day = merge_count(day, counted(1, index, rows[index]))
    assert day_totals(day)["revenue_cents"] == sum(100 * (n + 1) for n in range(6))


def test_a_count_travels_as_json_and_decodes() -> None:
    row = count_notice(None, "confirmed", 1000, [("A", 1)], was_confirmed=True)
    event = counted(2, 9, row)
    decoded: Any = decode_event(REPORT_EVENTS, event.dumps())
    assert isinstance(decoded, SalesCounted)
    assert (decoded.partition, decoded.offset, decoded.statuses, decoded.units) == (
        2, 9, row["statuses"], row["units"])


def test_popular_products_rank_units_over_the_window() -> None:
    def day_row(units: dict[str, int]) -> dict[str, Any]:
        return {"partitions": {"0": {"offset": 1, "statuses": {}, "units": units}}}

    rows = [day_row({"A": 1, "B": 5}), day_row({"A": 6, "C": 2, "D": -1}), None]
    assert popular_products(rows) == [{"sku": "A", "units": 7}, {"sku": "B", "units": 5},
                                      {"sku": "C", "units": 2}]
    assert popular_products(rows, limit=1) == [{"sku": "A", "units": 7}]
    assert window_days("2026-03-01", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]
