"""web/frontend.py: the pages and static files of the web frontend, without Kafka.

The app's own aiohttp application is served by test_web_views.py only (it serves on one event
loop); here page handlers are called with mocked requests, and static files are served by a
small application with the real gateway middleware in front, as the worker has it.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from app import app
from web.frontend import (
    CONSOLE_PATHS,
    STATIC_DIR,
    STOREFRONT_PATHS,
    TEMPLATES_DIR,
    render_shell,
)
from web.middleware import REQUEST_ID_HEADER, gateway

ROOT = Path(__file__).resolve().parents[2]


def page_routes() -> dict[str, Any]:
    app.discover()
    return {route.resource.canonical: route for route in app.web.web_app.router.routes()
            if route.method == "GET" and route.resource is not None}


def test_every_page_path_is_a_get_route_and_faust_index_is_left_out() -> None:
    routes = page_routes()
    assert set(STOREFRONT_PATHS) | set(CONSOLE_PATHS) <= set(routes)
    assert all(not p.startswith("/api") for p in (*STOREFRONT_PATHS, *CONSOLE_PATHS))
    enabled = [bp for _, bp in app.web.blueprints._enabled]
    assert "faust.web.apps.production_index:blueprint" not in enabled


async def test_a_page_answers_its_html_shell_with_the_module_it_loads() -> None:
    routes = page_routes()
    for path, script in (("/", "storefront.js"), ("/orders/{order_id}", "storefront.js"),
                         ("/admin", "console.js"), ("/admin/support/{ticket_id}", "console.js")):
        request = make_mocked_request("GET", path.replace("{", "").replace("}", ""),
                                      app=app.web.web_app)
        response: Any = await routes[path].handler(request)
        assert response.status == 200 and response.content_type == "text/html"
        assert f'src="/static/shop/{script}"' in response.text
        assert 'name="viewport"' in response.text and 'rel="icon"' in response.text


def test_the_shell_config_cannot_close_its_script_element() -> None:
    html = render_shell("storefront.html", title="ShopStream",
                        config={"app": "</script><script>alert(1)</script>"})
    embedded = re.search(r'id="shop-config">(.*?)</script>', html, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1)) == {"app": "</script><script>alert(1)</script>"}


def test_every_module_a_page_imports_exists() -> None:
    shop = STATIC_DIR / "shop"
    for module in shop.glob("*.js"):
        for imported in re.findall(r'from "\./([\w.]+)"', module.read_text()):
            assert (shop / imported).is_file(), f"{module.name} imports missing {imported}"
    for template in TEMPLATES_DIR.glob("*.html"):
        for src in re.findall(r'\$static/([\w/.]+)', template.read_text()):
            assert (STATIC_DIR / src).is_file(), f"{template.name} loads missing {src}"


def test_templates_and_static_files_are_package_data() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["web"].split(",")]
    web_dir = ROOT / "web"
    files = [p for p in (*TEMPLATES_DIR.rglob("*"), *STATIC_DIR.rglob("*")) if p.is_file()]
    assert files
    for path in files:
        relative = path.relative_to(web_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} not packaged"


async def test_static_files_pass_the_gateway_without_the_api_rate_limit() -> None:
    application = web.Application(middlewares=[
        gateway("http://w1", frozenset(), rate=1.0, burst=1.0, caller=lambda _: "one",
                secret="test-secret")])
    application.router.add_static("/static/", STATIC_DIR)
    async with TestClient(TestServer(application)) as client:
        for _ in range(5):  # far over the burst of 1: static files are not /api
            answer = await client.get("/static/shop/api.js")
            assert answer.status == 200
            assert answer.content_type in ("application/javascript", "text/javascript")
            assert answer.headers[REQUEST_ID_HEADER]
        missing = await client.get("/static/shop/nope.js")
        assert missing.status == 404 and missing.headers[REQUEST_ID_HEADER]
        outside = await client.get("/static/../frontend.py")
        assert outside.status in (403, 404)
