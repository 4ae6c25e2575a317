"""Analytics HTTP: the live figures of a window, the top products, and the tables' rows.

``GET /api/analytics/summary`` and ``GET /api/analytics/products/top`` (admin) read only
``analytics_windows``, the global table in which the merger keeps every window's figures, all
partitions merged (see agents/analytics.py). Every worker holds the whole of it, so any worker
answers completely without asking another: the choice here is *a small aggregated copy that
every worker reads*, not routing to the owners of partitions (a summary needs every
partition, so routing would mean asking every worker for every answer). The copy is a few
hundred milliseconds behind the events (the batch and the merge).

``GET /api/analytics/tables/{name}`` (admin) shows an analytics table's rows as the live
table pages draw them: the windows of the last hour with each source's counters (from the
same copy, so complete on any worker) or, for ``session-activity``, this worker's sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from faust.web import Request, Response
from pydantic import BaseModel, Field

from models.analytics import (
    HOP_SIZE,
    MINUTE,
    WINDOWS,
    iso,
    merge,
    summarize,
    top_products,
    window_span,
)
from models.base import utcnow
from tables.analytics import public_view, read_window, session_activity
from tables.catalog import catalog
from web.bodies import read_query
from web.errors import NotFound
from web.identity import require
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["ANALYTICS_TABLES", "SummaryOut", "TopOut", "current_summary", "table_rows"]

Window = Literal["1m", "10m", "1h", "24h"]


class SummaryQuery(BaseModel):
    """Which window: the last minute, 10 minutes, hour or 24 hours (default 10m)."""

    window: Window = "10m"


class TopQuery(BaseModel):
    """Which window, what to rank products by, and how many."""

    window: Window = "10m"
    by: Literal["views", "carts", "purchases", "revenue"] = "views"
    limit: int = Field(default=10, ge=1, le=100)


class Funnel(BaseModel):
    """Distinct visitors who viewed a product, added to a cart, and bought."""

    viewed: int
    carted: int
    purchased: int


class MinuteOut(BaseModel):
    """The counters of one minute."""

    at: str
    product_views: int
    add_to_carts: int
    purchases: int
    revenue_cents: int


class SummaryOut(BaseModel):
    """A window's figures (purchases are confirmed orders), with one series point a minute."""

    window: str
    since: str
    until: str
    product_views: int
    add_to_carts: int
    purchases: int
    revenue_cents: int
    active_users: int
    funnel: Funnel
    series: list[MinuteOut]


class ProductFigures(BaseModel):
    """A product's figures in the window (purchases: units bought)."""

    sku: str
    name: str
    category: str
    views: int
    add_to_carts: int
    purchases: int
    revenue_cents: int


class CategoryFigures(BaseModel):
    """A category's figures in the window."""

    category: str
    views: int
    add_to_carts: int
    purchases: int
    revenue_cents: int


class TopOut(BaseModel):
    """The top products and every category of a window."""

    window: str
    by: str
    products: list[ProductFigures]
    categories: list[CategoryFigures]


class TableOut(BaseModel):
    """An analytics table's current rows (windows newest first)."""

    name: str
    description: str
    columns: list[str]
    rows: list[dict[str, Any]]


def _minutes(since: int, until: int) -> dict[int, dict[str, Any]]:
    rows = {}
    for start in range(since, until, MINUTE):
        row = read_window("1m", start)
        if row is not None:
            rows[start] = row
    return rows


def current_summary(window: str = "10m") -> dict[str, Any]:
    """Return the summary of ``window`` from this worker's copy of the merged windows."""
    now = utcnow()
    since, until = window_span(window, now)
    totals = read_window("10m", since) if window == "10m" else None
    return summarize(window, now, _minutes(since, until), totals)


def current_top(window: str, by: str, limit: int) -> dict[str, Any]:
    """Return the top products and the categories of ``window`` from this worker's copy."""
    since, until = window_span(window, utcnow())
    figures = merge(_minutes(since, until).values())
    products = {sku: catalog.get(sku) or {} for sku in figures["skus"]}
    return top_products(figures, products, by, limit)


async def off_loop(read: Callable[..., dict[str, Any]], window: str, *args: Any) -> Any:
    """Return ``read(window, *args)``; an hour or a day of minutes is merged in a thread.

    A day is up to 1,440 rows with per-product figures and visitor sets: too much work for
    the event loop, which serves every other request and agent of the worker.
    """
    if WINDOWS[window] <= 10:
        return read(window, *args)
    return await asyncio.to_thread(read, window, *args)


@endpoint("GET", "/api/analytics/summary", query=SummaryQuery, roles=("admin",),
          response=SummaryOut)
class SummaryView(ShopView):
    """Product views, carts, purchases, revenue, active users and the funnel of a window."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        window = read_query(request, SummaryQuery).window
        return self.json(await off_loop(current_summary, window))


@endpoint("GET", "/api/analytics/products/top", query=TopQuery, roles=("admin",),
          response=TopOut)
class TopProductsView(ShopView):
    """The top products of a window by views, carts, purchases or revenue, and categories."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        query = read_query(request, TopQuery)
        top = await off_loop(current_top, query.window, query.by, query.limit)
        return self.json({"window": query.window, "by": query.by, **top})


#: The analytics tables a page shows: name -> (window kind or None, description).
ANALYTICS_TABLES = {
    "analytics-minutes": ("1m", "What each source partition counted in each minute "
                                "(Faust tumbling window, 1 minute, kept 25 h)."),
    "analytics-10m": ("10m", "Every 10 minutes' counters, all partitions (Faust hopping "
                             "window, 10 minutes every minute, kept 25 h)."),
    "analytics-windows": ("merged", "Every minute's figures with all partitions merged "
                                    "(the global copy every worker reads)."),
    "session-activity": (None, "Activity per browsing session (this worker's partitions)."),
}
COUNTER_COLUMNS = ["product_views", "add_to_carts", "removes", "page_views", "searches",
                   "purchases", "revenue_cents", "late"]
#: How many windows back a table page shows, and how many sessions.
PAGE_WINDOWS = 60
PAGE_SESSIONS = 200


def table_rows(name: str) -> dict[str, Any]:
    """Return an analytics table's current rows as the table pages show them."""
    kind, description = ANALYTICS_TABLES[name]
    if kind is None:
        rows = [public_view(row) for _, row in zip(range(PAGE_SESSIONS),
                                                   session_activity.values(), strict=False)]
        rows.sort(key=lambda r: r.get("last_seen", ""), reverse=True)
        flat = [{"session_id": r.get("session_id"), "user_id": r.get("user_id"),
                 "events": r.get("events"), "first_seen": r.get("first_seen"),
                 "last_seen": r.get("last_seen"), **r.get("counts", {})} for r in rows]
        columns = ["session_id", "user_id", "events", "first_seen", "last_seen"]
        return {"name": name, "description": description, "columns": columns, "rows": flat}
    now = utcnow().timestamp()
    last = int(now // MINUTE) * MINUTE
    out: list[dict[str, Any]] = []
    source_kind = "1m" if kind == "merged" else kind
    size = HOP_SIZE if kind == "10m" else MINUTE
    for start in range(last, last - PAGE_WINDOWS * MINUTE, -MINUTE):
        row = read_window(source_kind, start)
        if row is None:
            continue
        window = {"window_start": iso(start), "window_end": iso(start + size)}
        if kind == "merged":
            out.append({**window, **{c: row.get(c, 0) for c in COUNTER_COLUMNS},
                        "active_users": len(row.get("visitors", ())),
                        "products": len(row.get("skus", {}))})
            continue
        for source, figures in row.get("sources", {}).items():
            out.append({**window, "source": source,
                        **{c: figures.get(c, 0) for c in COUNTER_COLUMNS},
                        "visitors": figures.get("visitors", 0),
                        "offset": figures.get("offset")})
    columns = (["window_start", "window_end"] + (["source"] if kind != "merged" else [])
               + COUNTER_COLUMNS + (["active_users", "products"] if kind == "merged"
                                    else ["visitors", "offset"]))
    return {"name": name, "description": description, "columns": columns, "rows": out}


@endpoint("GET", "/api/analytics/tables/{name}", roles=("admin",), response=TableOut,
          errors=(404,))
class AnalyticsTableView(ShopView):
    """An analytics table's current rows and window values (for the live table pages)."""

    async def get(self, request: Request, name: str) -> Response:
        require(request, "admin")
        if name not in ANALYTICS_TABLES:
            raise NotFound(f"no analytics table {name!r}; there are "
                           f"{', '.join(ANALYTICS_TABLES)}")
        return self.json(table_rows(name))
