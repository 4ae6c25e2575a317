"""Reports HTTP: the daily sales reports (admin) and the popular products (anyone).

Both are read from this worker's copy of the ``reports`` global table (every worker has all
of it), so no request is forwarded. The daily-report task makes a day's report at
``SHOP_TASK_DAILY_REPORT_CRON`` (00:05 UTC by default) for the day before; the popularity
task refreshes the popular products every ``SHOP_TASK_POPULARITY_EVERY`` seconds.
"""

from __future__ import annotations

from datetime import date, timedelta

from faust.web import Request, Response
from pydantic import BaseModel, Field

from models.base import utcnow
from models.reports import day_totals
from tables.reports import reports
from web.bodies import read_query
from web.errors import NotFound
from web.identity import require
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["DailyReportOut", "DailyReportQuery", "PopularOut"]


class DailyReportQuery(BaseModel):
    """Which day's report."""

    day: date | None = Field(default=None, description="YYYY-MM-DD (UTC); default: yesterday")


class StatusTotal(BaseModel):
    """Orders that reached a status that day, and their total."""

    orders: int
    cents: int


class DailyReportOut(BaseModel):
    """A day's sales (UTC): orders and cents by status reached that day, revenue, units."""

    day: str
    generated_at: str | None = Field(default=None, description="None: live totals so far")
    orders_by_status: dict[str, StatusTotal]
    confirmed_orders: int
    revenue_cents: int = Field(description="total of the orders confirmed that day")
    units_by_sku: dict[str, int]


class PopularProduct(BaseModel):
    """A product and the units sold in the window."""

    sku: str
    units: int


class PopularOut(BaseModel):
    """The best-selling products over the last days (from confirmed orders)."""

    as_of: str | None = None
    days: int | None = None
    generated_at: str | None = None
    items: list[PopularProduct]


@endpoint("GET", "/api/admin/reports/daily", roles=("admin",), query=DailyReportQuery,
          response=DailyReportOut, errors=(404,))
class DailyReportView(ShopView):
    """The sales report of a day (UTC); a day not reported yet: its live totals so far."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        query = read_query(request, DailyReportQuery)
        day = (query.day or (utcnow().date() - timedelta(days=1))).isoformat()
        report = reports.get(f"report:{day}")
        if report is None:
            sales = reports.get(f"sales:{day}")
            if sales is None:
                raise NotFound(f"no sales counted for {day}")
            report = {"day": day, "generated_at": None, **day_totals(sales)}
        return self.json({k: v for k, v in report.items() if not k.startswith("_")})


@endpoint("GET", "/api/reports/popular", response=PopularOut)
class PopularProductsView(ShopView):
    """The popular products (most units confirmed over the last days), best first."""

    async def get(self, request: Request) -> Response:
        popular = reports.get("popular") or {"items": []}
        return self.json({k: v for k, v in popular.items() if not k.startswith("_")})
