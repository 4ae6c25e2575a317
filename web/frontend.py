"""The web frontend: the storefront's and the admin console's pages and their static files.

Both are small single-page applications in plain ES modules (``web/static/shop/``): every
page path below answers the same HTML shell (``web/templates/``), and the browser's script
draws the page the path names from the JSON API, so a link, a reload and a bookmark land on
the same page. Static files are served by aiohttp's static route under ``/static/``; both go
through the gateway middleware like every other answer (request id, X-Served-By; no rate
limit outside ``/api``).

The storefront owns ``/``: Faust's production index page (``{"status": "OK"}`` at ``/``) is
left out; ``/health`` answers that question.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from string import Template
from typing import cast

from aiohttp import web as aioweb
from faust.web import Request, Response

from app import app
from web.views import ShopView

__all__ = ["CONSOLE_PATHS", "STATIC_DIR", "STOREFRONT_PATHS", "TEMPLATES_DIR", "render_shell"]

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/static/"

#: The storefront's pages (the links of notifications point at some of them).
STOREFRONT_PATHS = (
    "/", "/products", "/products/{sku}", "/cart", "/checkout", "/orders",
    "/orders/{order_id}", "/support", "/support/tickets/{ticket_id}", "/notifications",
    "/account", "/login", "/register",
)
#: The admin console's pages (admin and support roles; the API checks the roles).
CONSOLE_PATHS = (
    "/admin", "/admin/orders", "/admin/catalog", "/admin/promotions", "/admin/support",
    "/admin/support/{ticket_id}", "/admin/logs", "/admin/trace", "/admin/dead-letters",
    "/admin/tasks",
)

_FAUST_INDEX = "faust.web.apps.production_index:blueprint"


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def render_shell(name: str, *, title: str, config: dict[str, str]) -> str:
    """Return the HTML shell ``name`` (a template in web/templates/) filled in."""
    return _template(name).substitute(
        title=title, static=STATIC_PREFIX.rstrip("/"),
        config=json.dumps(config).replace("</", "<\\/"))


def _shell_view(template: str, title: str, app_name: str) -> type[ShopView]:
    class ShellView(ShopView):
        """One page of the web frontend: the HTML shell the script fills in."""

        async def get(self, request: Request, **_: str) -> Response:
            html = render_shell(template, title=title, config={"app": app_name})
            return cast(Response, aioweb.Response(
                text=html, content_type="text/html", headers={"Cache-Control": "no-cache"}))

    return ShellView


def _drop_faust_index() -> None:
    """Leave out Faust's ``/`` status page: the storefront's home is there."""
    blueprints = app.web.blueprints
    blueprints._enabled = [(prefix, bp) for prefix, bp in blueprints._enabled
                           if bp != _FAUST_INDEX]


def _register() -> None:
    _drop_faust_index()
    for number, path in enumerate(STOREFRONT_PATHS):
        app.page(path, name=f"storefront-{number}")(
            _shell_view("storefront.html", "ShopStream", "storefront"))
    for number, path in enumerate(CONSOLE_PATHS):
        app.page(path, name=f"console-{number}")(
            _shell_view("console.html", "ShopStream console", "console"))
    web_app: aioweb.Application = app.web.web_app  # type: ignore[attr-defined]
    web_app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static",
                              append_version=False)


_register()
