"""Sales reports and popular products: pure rules over the orders' status notices.

The orders table is partitioned, so the day's sales are added up in two steps, each exact
under at-least-once delivery:

1. Per orders partition and day, a running count of the ``order_<status>`` notices (orders
   and cents per status, units sold per sku), updated by the partition's owner under the
   replay guard; each change is sent on as a :class:`SalesCounted` with the source offset.
2. One writer (the one-partition ``sales`` topic) keeps, per day, each partition's newest
   count: a redelivered or late count carries an older offset and is ignored, so the sum
   over partitions is the day's total, however often counts arrive.

A daily report is a snapshot of a day's totals; popular products are the skus with the most
units confirmed (less those of confirmed orders later cancelled) over the last days.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from models.base import Event, event_types

__all__ = [
    "POPULAR_DAYS",
    "POPULAR_LIMIT",
    "REPORT_EVENTS",
    "PopularityRequested",
    "ReportRequested",
    "SalesCounted",
    "count_notice",
    "daily_report",
    "day_of",
    "day_totals",
    "merge_count",
    "popular_products",
    "window_days",
]

#: How many days of sales popularity looks at, and how many products it lists.
POPULAR_DAYS = 7
POPULAR_LIMIT = 20


class SalesCounted(Event):
    """One orders partition's running count of a day's sales, as of a source offset."""

    event_type = "sales_counted"
    day: str
    partition: int
    offset: int
    statuses: dict[str, Any]
    units: dict[str, int]


class ReportRequested(Event):
    """The daily-report task asks for the report of ``day`` (UTC, ISO date)."""

    event_type = "report_requested"
    day: str


class PopularityRequested(Event):
    """The popularity task asks for the popular products over the days up to ``as_of``."""

    event_type = "popularity_requested"
    as_of: str
    days: int = POPULAR_DAYS


REPORT_EVENTS = event_types(SalesCounted, ReportRequested, PopularityRequested)


def day_of(at: datetime) -> str:
    """Return the UTC day of ``at`` as an ISO date."""
    return at.astimezone(UTC).date().isoformat()


def count_notice(row: Mapping[str, Any] | None, status: str, total_cents: int,
                 items: Iterable[tuple[str, int]], *, was_confirmed: bool) -> dict[str, Any]:
    """Return a partition's day count with one order notice of ``status`` added.

    A confirmation adds the order's units to the skus sold; a cancellation of an order that
    had been confirmed takes them off again (on the day of the cancellation).
    """
    statuses = {k: dict(v) for k, v in (row or {}).get("statuses", {}).items()}
    entry = statuses.setdefault(status, {"orders": 0, "cents": 0})
    entry["orders"] += 1
    entry["cents"] += total_cents
    units = Counter((row or {}).get("units", {}))
    sign = 1 if status == "confirmed" else -1 if status == "cancelled" and was_confirmed else 0
    for sku, quantity in items:
        units[sku] += sign * quantity
    return {"statuses": statuses, "units": {k: v for k, v in units.items() if v}}


def merge_count(row: Mapping[str, Any] | None, counted: SalesCounted) -> dict[str, Any]:
    """Return a day's row with ``counted`` as its partition's count, if it is the newest."""
    partials = dict((row or {}).get("partitions", {}))
    known = partials.get(str(counted.partition))
    if known is None or counted.offset > known["offset"]:
        partials[str(counted.partition)] = {"offset": counted.offset,
                                            "statuses": counted.statuses,
                                            "units": counted.units}
    return {"day": counted.day, "partitions": partials}


def day_totals(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a day's totals: orders and cents by status, revenue, and units by sku."""
    statuses: dict[str, dict[str, int]] = {}
    units: Counter[str] = Counter()
    for partial in (row or {}).get("partitions", {}).values():
        for status, entry in partial["statuses"].items():
            total = statuses.setdefault(status, {"orders": 0, "cents": 0})
            total["orders"] += entry["orders"]
            total["cents"] += entry["cents"]
        units.update(partial["units"])
    confirmed = statuses.get("confirmed", {"orders": 0, "cents": 0})
    return {"orders_by_status": dict(sorted(statuses.items())),
            "confirmed_orders": confirmed["orders"], "revenue_cents": confirmed["cents"],
            "units_by_sku": {k: v for k, v in sorted(units.items()) if v}}


def daily_report(row: Mapping[str, Any] | None, day: str, at: datetime) -> dict[str, Any]:
    """Return the sales report of ``day`` from its row, made at ``at``."""
    return {"day": day, "generated_at": at.astimezone(UTC).isoformat(), **day_totals(row)}


def window_days(as_of: str, days: int) -> list[str]:
    """Return the ``days`` ISO dates ending with ``as_of``, oldest first."""
    end = date.fromisoformat(as_of)
    return [(end - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def popular_products(day_rows: Iterable[Mapping[str, Any] | None],
                     limit: int = POPULAR_LIMIT) -> list[dict[str, Any]]:
    """Return the skus with the most units sold over ``day_rows``, most first (ties by sku)."""
    units: Counter[str] = Counter()
    for row in day_rows:
        units.update(day_totals(row)["units_by_sku"])
    ranked = sorted(((sku, n) for sku, n in units.items() if n > 0),
                    key=lambda item: (-item[1], item[0]))
    return [{"sku": sku, "units": n} for sku, n in ranked[:limit]]
