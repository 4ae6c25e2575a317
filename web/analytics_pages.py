"""The live analytics pages: the dashboard and a page per analytics table (HTML, admin data).

``/analytics`` draws the figures of a window (tiles, a per-minute chart, revenue, the funnel,
top products and categories) and follows ``GET /api/analytics/stream`` so it updates without
a reload; ``/analytics/tables/{name}`` shows an analytics table's current rows and window
values, re-read every two seconds. The pages themselves are plain HTML (web/templates/
analytics/) with ES modules and a stylesheet (web/static/analytics/, served under
``/analytics/static/``), no build step.

A browser does not send a bearer token when it navigates, so the HTML is served to anyone
and holds no figures; the page's script reads the admin's access token from
``localStorage["shop.access_token"]`` (where the admin console keeps it) and calls the admin
API with ``Authorization: Bearer``; the live feed is read with ``fetch``, which can send the
header (``EventSource`` cannot), so no token ever goes into a URL.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from string import Template
from typing import cast

from aiohttp import web as aioweb
from faust.web import Request, Response

from app import app
from web.analytics_figures import ANALYTICS_TABLES
from web.errors import NotFound
from web.views import ShopView

__all__ = ["STATIC_FILES", "render_page"]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates" / "analytics"
STATIC = HERE / "static" / "analytics"
STATIC_URL = "/analytics/static"
#: The files served under STATIC_URL and their content types (nothing else is).
STATIC_FILES = {"api.js": "text/javascript", "charts.js": "text/javascript",
                "dashboard.js": "text/javascript", "table.js": "text/javascript",
                "analytics.css": "text/css"}


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render_page(template: str, **values: str) -> str:
    """Return the analytics page template ``template`` filled in with ``values``."""
    return _template(template).substitute(static=STATIC_URL, **values)


def _html(text: str) -> Response:
    return cast(Response, aioweb.Response(text=text, content_type="text/html",
                                          headers={"Cache-Control": "no-cache"}))


@app.page("/analytics")
class DashboardPage(ShopView):
    """The live analytics dashboard (the figures come from the admin API)."""

    async def get(self, request: Request) -> Response:
        links = "".join(f'<li><a href="/analytics/tables/{name}">{html.escape(name)}</a> '
                        f"{html.escape(description)}</li>"
                        for name, (_, description) in ANALYTICS_TABLES.items())
        return _html(render_page("dashboard.html", tables=links))


@app.page("/analytics/tables/{name}")
class TablePage(ShopView):
    """A live page of one analytics table's rows and window values."""

    async def get(self, request: Request, name: str) -> Response:
        if name not in ANALYTICS_TABLES:
            raise NotFound(f"no analytics table {name!r}; there are "
                           f"{', '.join(ANALYTICS_TABLES)}")
        return _html(render_page("table.html", name=html.escape(name)))


@app.page("/analytics/static/{filename}")
class StaticFile(ShopView):
    """A script or stylesheet of the analytics pages."""

    async def get(self, request: Request, filename: str) -> Response:
        content_type = STATIC_FILES.get(filename)
        if content_type is None:
            raise NotFound(f"no analytics file {filename!r}")
        return cast(Response, aioweb.Response(
            body=_read(filename), content_type=content_type,
            headers={"Cache-Control": "no-cache"}))


@cache
def _read(filename: str) -> bytes:
    return (STATIC / filename).read_bytes()
