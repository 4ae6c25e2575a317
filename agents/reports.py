"""Reports agents: a day's sales counted per orders partition, then summed by one writer.

:func:`count_notice_sales` reads the ``order_<status>`` notices (agents/order_notices.py) and keeps
each partition's running count of the day (``tables.reports.sales_partials``, under the
replay guard), sending every new count to the one-partition ``sales`` topic with its source
offset. ``reports.sales`` there keeps each partition's newest count per day (in batches: one
write per day a batch, however many orders it counts), and makes the
daily report and the popular products when the scheduler's tasks ask
(:func:`request_daily_report`, :func:`request_popularity`); see ``models/reports.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from faust.types import EventT, StreamT

from agents.batches import FOLD_WITHIN_S, Decoded, handle_batches
from agents.order_notices import Failures, reads_order_notices
from agents.topics import shop_topic
from app import app
from models.base import utcnow
from models.orders import OrderUpdate
from models.reports import (
    POPULAR_DAYS,
    REPORT_EVENTS,
    PopularityRequested,
    ReportRequested,
    SalesCounted,
    count_notice,
    daily_report,
    day_of,
    merge_count,
    popular_products,
    window_days,
)
from tables.orders import orders
from tables.replay import Position, update_many, update_once
from tables.reports import reports, sales, sales_partials

__all__ = ["count_notice_sales", "keep_reports", "request_daily_report", "request_popularity",
           "sales_topic"]

#: sales [day], one partition: SalesCounted, ReportRequested, PopularityRequested. (Declared
#: here, next to its only producer and consumer.)
sales_topic = shop_topic("sales", partitions=1)

#: Events of the sales topic a batch takes at most.
BATCH = 2_000


@reads_order_notices("reports")
async def count_notice_sales(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
    """Count a partition's order notices in its counts of the day, once; send the counts.

    One write a day a batch. The new count goes to the sales topic every time, also for a
    redelivered batch (it may not have left before a crash): ``merge_count`` keeps the
    newest count of a partition by offset, so sending it again changes nothing.
    """
    partition = notices[-1].event.message.partition
    topic = notices[-1].position.topic
    by_day: dict[str, list[Decoded[OrderUpdate]]] = defaultdict(list)
    for notice in notices:
        by_day[day_of(notice.record.occurred_at)].append(notice)
    failed: Failures = []
    for day, mine in by_day.items():
        key = f"{day}/{partition}"
        updates = [(notice.position, _counted(notice.record)) for notice in mine]
        failed.extend((mine[index].event, exc)
                      for index, exc in update_many(sales_partials, key, updates))
        row = sales_partials.get(key)
        if row is None:
            continue
        offset = row["_applied"]["offsets"][topic]
        news = SalesCounted.new(day=day, partition=partition, offset=offset,
                                correlation_id=mine[-1].record.order_id,
                                statuses=row["statuses"], units=row["units"])
        await sales_topic.send(key=day, value=news.dumps())
    return failed


def _counted(event: OrderUpdate) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    """Return the update that counts ``event`` (the order's lines read when it applies)."""

    def count(row: dict[str, Any] | None) -> dict[str, Any]:
        order = orders.get(event.order_id) or {}
        items = [(i["sku"], i["quantity"]) for i in order.get("items", ())]
        was_confirmed = any(h["status"] == "confirmed" for h in order.get("history", ()))
        return count_notice(row, event.status, event.total_cents, items,
                            was_confirmed=was_confirmed)

    return count


def apply_report_event(event: Any, position: Position) -> None:
    """Apply a count, or make the report or the popular products a task asked for."""
    if isinstance(event, SalesCounted):
        key = f"sales:{event.day}"
        update_once(sales, key, position, lambda row: merge_count(row, event))
    elif isinstance(event, ReportRequested):
        key = f"report:{event.day}"
        day_row = sales.get(f"sales:{event.day}")
        update_once(sales, key, position, lambda _: daily_report(day_row, event.day, utcnow()))
    elif isinstance(event, PopularityRequested):
        key = "popular"
        items = popular_products(sales.get(f"sales:{day}")
                                 for day in window_days(event.as_of, event.days))
        update_once(sales, key, position, lambda _: {
            "as_of": event.as_of, "days": event.days, "generated_at": utcnow().isoformat(),
            "items": items})
    else:
        return
    # Copied every time, also for a redelivery: the copy may not have been written before.
    reports[key] = {k: v for k, v in sales[key].items() if not k.startswith("_")}


def apply_report_batch(batch: Sequence[Decoded[Any]]) -> list[tuple[EventT, Exception]]:
    """Apply a batch of the sales topic; return the events that failed, with why.

    A day's counts are merged with one write a batch (each carries its partition's running
    count, so only the newest matters, and ``merge_count`` keeps the newest by offset); the
    tasks' requests come after the batch's counts. Call in the sales topic's event context.
    """
    counts: dict[str, list[Decoded[Any]]] = defaultdict(list)
    for item in batch:
        if isinstance(item.record, SalesCounted):
            counts[f"sales:{item.record.day}"].append(item)
    failed: list[tuple[EventT, Exception]] = []
    for key, items in counts.items():
        updates = [(item.position, _merge(item.record)) for item in items]
        failed.extend((items[index].event, exc)
                      for index, exc in update_many(sales, key, updates, table_name="sales"))
        reports[key] = {k: v for k, v in sales[key].items() if not k.startswith("_")}
    for item in batch:
        if not isinstance(item.record, SalesCounted):
            try:
                apply_report_event(item.record, item.position)
            except Exception as exc:
                failed.append((item.event, exc))
    return failed


def _merge(counted: SalesCounted) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    return lambda row: merge_count(row, counted)


@app.agent(sales_topic, name="reports.sales")
async def keep_reports(stream: StreamT[bytes]) -> None:
    """Consume the sales topic, in batches, into the day totals, reports and popular products."""
    await handle_batches(stream, REPORT_EVENTS, apply_report_batch, agent="reports.sales",
                         max_events=BATCH, within=FOLD_WITHIN_S)


async def request_daily_report(day: str) -> None:
    """Ask for the sales report of ``day`` (ISO date, UTC)."""
    request = ReportRequested.new(day=day, correlation_id=f"report:{day}")
    await sales_topic.send(key=day, value=request.dumps())


async def request_popularity(as_of: str, days: int = POPULAR_DAYS) -> None:
    """Ask for the popular products over the ``days`` days up to ``as_of``."""
    request = PopularityRequested.new(as_of=as_of, days=days, correlation_id=f"popular:{as_of}")
    await sales_topic.send(key="popular", value=request.dumps())
