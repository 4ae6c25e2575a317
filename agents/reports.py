"""Reports agents: a day's sales counted per orders partition, then summed by one writer.

:func:`count_notice_sales` reads the ``order_<status>`` notices (agents/order_notices.py) and keeps
each partition's running count of the day (``tables.reports.sales_partials``, under the
replay guard), sending every new count to the one-partition ``sales`` topic with its source
offset. ``reports.sales`` there keeps each partition's newest count per day, and makes the
daily report and the popular products when the scheduler's tasks ask
(:func:`request_daily_report`, :func:`request_popularity`); see ``models/reports.py``.
"""

from __future__ import annotations

from typing import Any

from faust import current_event
from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.order_notices import reads_order_notices
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
from tables.replay import Position, Send, decide_once, update_once
from tables.reports import reports, sales, sales_partials

__all__ = ["count_notice_sales", "keep_reports", "request_daily_report", "request_popularity",
           "sales_topic"]

#: sales [day], one partition: SalesCounted, ReportRequested, PopularityRequested. (Declared
#: here, next to its only producer and consumer.)
sales_topic = shop_topic("sales", partitions=1)


@reads_order_notices("reports")
async def count_notice_sales(event: OrderUpdate, position: Position) -> None:
    """Count an order notice in its partition's count of the day, once; send the new count."""
    current = current_event()
    assert current is not None
    partition = current.message.partition
    day = day_of(event.occurred_at)
    order = orders.get(event.order_id) or {}
    items = [(i["sku"], i["quantity"]) for i in order.get("items", ())]
    was_confirmed = any(h["status"] == "confirmed" for h in order.get("history", ()))

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any], list[Send]]:
        counted = count_notice(row, event.status, event.total_cents, items,
                               was_confirmed=was_confirmed)
        news = SalesCounted.new(day=day, partition=partition, offset=position.offset,
                                correlation_id=event.order_id, **counted)
        return counted, [("sales", day, news.dumps().decode())]

    for _, key, value in decide_once(sales_partials, f"{day}/{partition}", position, step):
        await sales_topic.send(key=key, value=value.encode())


async def apply_report_event(event: Any, position: Position) -> None:
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


@app.agent(sales_topic, name="reports.sales")
async def keep_reports(stream: StreamT[bytes]) -> None:
    """Consume the sales topic into the day totals, the daily reports and popular products."""
    await for_each_event(stream, REPORT_EVENTS, apply_report_event, agent="reports.sales")


async def request_daily_report(day: str) -> None:
    """Ask for the sales report of ``day`` (ISO date, UTC)."""
    request = ReportRequested.new(day=day, correlation_id=f"report:{day}")
    await sales_topic.send(key=day, value=request.dumps())


async def request_popularity(as_of: str, days: int = POPULAR_DAYS) -> None:
    """Ask for the popular products over the ``days`` days up to ``as_of``."""
    request = PopularityRequested.new(as_of=as_of, days=days, correlation_id=f"popular:{as_of}")
    await sales_topic.send(key="popular", value=request.dumps())
