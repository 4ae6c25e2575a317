"""The live analytics pages in headless Chromium against a real worker: the dashboard draws
the figures and follows the live feed without a reload, a table page shows its rows, and
neither logs a console error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


async def track(http: aiohttp.ClientSession, url: str, views: int) -> None:
    async with http.post(url + "/api/events", json={
            "session_id": "page-session-1",
            "events": [{"type": "product_view", "sku": "SKU-1"}] * views}) as response:
        assert response.status == 202


async def text_of(page: Any, selector: str) -> str:
    return str(await page.text_content(selector))


async def test_dashboard_and_table_pages_update_live(workers: WorkerFactory) -> None:
    # A browser test that cannot run fails: never a silent pass.
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' "
                    "(apt-get install -y chromium; `make test` does it)", pytrace=False)
    try:
        from playwright import async_api as playwright_api
    except ImportError as exc:
        pytest.fail(f"Playwright is missing ({exc}): install the test extras "
                    "(pip install -e '.[test]'; `make test` does it)", pytrace=False)
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    errors: list[str] = []
    async with aiohttp.ClientSession() as http, playwright_api.async_playwright() as pw:
        await track(http, worker.url, 3)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.add_init_script(
                f"window.localStorage.setItem('shop.access_token', {token!r});")
            await page.goto(worker.url + "/analytics")
            await page.wait_for_function(
                "document.getElementById('product_views').textContent === '3'", timeout=15000)
            assert await page.locator("#series polyline").count() == 3
            assert await page.locator("#funnel rect").count() == 3
            # More views arrive: the page follows the live feed, no reload.
            await track(http, worker.url, 2)
            await page.wait_for_function(
                "document.getElementById('product_views').textContent === '5'", timeout=15000)
            assert "SKU-1" in (await page.inner_html("#products"))
            await page.click("button[data-window='1h']")
            await page.wait_for_function(
                "document.getElementById('span').textContent.length > 0")

            await page.goto(worker.url + "/analytics/tables/analytics-minutes")
            await page.wait_for_selector("#rows tbody tr", timeout=10000)
            assert "product_views" in await text_of(page, "#rows thead")
            await page.goto(worker.url + "/analytics/tables/session-activity")
            await page.wait_for_selector("#rows tbody tr", timeout=10000)
            assert "page-session-1" in await text_of(page, "#rows tbody")

            # Without a token the page says what to do (the API's 401 is its only error).
            fresh = await browser.new_page()
            await fresh.goto(worker.url + "/analytics/tables/analytics-windows")
            await fresh.wait_for_selector("#notice:not([hidden])", timeout=10000)
            assert "Sign in" in await text_of(fresh, "#notice")
        finally:
            await browser.close()
        async with http.get(worker.url + "/analytics/static/secret.py") as response:
            assert response.status == 404
        async with http.get(worker.url + "/analytics/tables/nope") as response:
            assert response.status == 404
    assert errors == [], errors
