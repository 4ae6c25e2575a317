"""Analytics windows on a real worker and broker: tracked events and a confirmed order land
in the minutes of their time (a late event within the grace period too, one past it counted
only as late), and the summary, top products and table endpoints answer the exact counts."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

SUMMARY_KEYS = {"window", "since", "until", "product_views", "add_to_carts", "purchases",
                "revenue_cents", "active_users", "funnel", "series"}


async def until(shop: Shop, path: str, ok: Callable[[Any], bool], within: float = 30.0) -> Any:
    """GET ``path`` as an admin until ``ok(body)``; return the body."""
    deadline = time.monotonic() + within
    while True:
        status, body = await shop.call("GET", path, headers=ADMIN)
        if status == 200 and ok(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {path}: {status} {body}")
        await asyncio.sleep(0.3)


def minute_iso(at: datetime) -> str:
    return at.replace(second=0, microsecond=0).isoformat()


async def test_events_land_in_their_windows_and_bad_batches_are_refused(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1", SHOP_ANALYTICS_GRACE="120")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product("BOOK-A", 20, price_cents=1500, category="books")
        await shop.add_product("TOY-B", 20, price_cents=700, category="toys")
        await shop.wait_for_catalog(2)

        now = datetime.now(UTC)
        recent = now - timedelta(seconds=2)
        late = now - timedelta(seconds=90)        # within the 120 s grace
        too_late = now - timedelta(seconds=400)   # past it: counted as late only

        def ev(kind: str, sku: str, at: datetime) -> dict[str, str]:
            return {"type": kind, "sku": sku, "at": at.isoformat()}

        status, body = await shop.call("POST", "/api/events", json={
            "session_id": "anon-session-1",
            "events": [ev("product_view", "BOOK-A", recent), ev("product_view", "BOOK-A", recent),
                       ev("add_to_cart", "BOOK-A", recent), ev("product_view", "BOOK-A", late),
                       ev("product_view", "TOY-B", too_late),
                       {"type": "search", "query": "lego", "at": recent.isoformat()}]})
        assert status == 202, body
        status, body = await shop.call("POST", "/api/events", headers=customer("u-1"), json={
            "session_id": "user-session-1",
            "events": [ev("product_view", "TOY-B", recent), ev("add_to_cart", "TOY-B", recent)]})
        assert status == 202, body
        status, placed = await shop.place("u-1", [("TOY-B", 2)])
        assert status == 201, placed
        order = await shop.settled("u-1", placed["id"])
        assert order["status"] == "confirmed", order

        summary = await until(shop, "/api/analytics/summary?window=1h",
                              lambda b: b["purchases"] == 1 and b["product_views"] >= 4)
        assert set(summary) == SUMMARY_KEYS
        assert summary["window"] == "1h" and len(summary["series"]) == 60
        assert (summary["product_views"], summary["add_to_carts"]) == (4, 2), summary
        assert summary["revenue_cents"] == order["total_cents"] == 1400
        assert summary["active_users"] == 2, summary
        assert summary["funnel"] == {"viewed": 2, "carted": 2, "purchased": 1}
        by_minute = {point["at"]: point for point in summary["series"]}
        assert by_minute[minute_iso(late)]["product_views"] == 1, summary["series"]
        assert sum(p["product_views"] for p in summary["series"]) == 4
        assert by_minute[minute_iso(too_late)]["product_views"] == 0

        # The 10-minute window: its totals come from the hopping table, the same counts.
        ten = await until(shop, "/api/analytics/summary",
                          lambda b: b["purchases"] == 1 and b["product_views"] == 4)
        assert ten["window"] == "10m" and len(ten["series"]) == 10
        assert ten["add_to_carts"] == 2 and ten["revenue_cents"] == 1400

        top = await until(shop, "/api/analytics/products/top?window=1h&by=views&limit=5",
                          lambda b: len(b["products"]) == 2)
        first, second = top["products"]
        assert first == {"sku": "BOOK-A", "name": "Product BOOK-A", "category": "books",
                         "views": 3, "add_to_carts": 1, "purchases": 0, "revenue_cents": 0}
        assert second["sku"] == "TOY-B" and second["purchases"] == 2
        assert second["revenue_cents"] == 1400
        by_revenue = await until(shop, "/api/analytics/products/top?window=1h&by=revenue",
                                 lambda b: bool(b["products"]))
        assert by_revenue["products"][0]["sku"] == "TOY-B"
        assert [c["category"] for c in by_revenue["categories"]] == ["toys", "books"]

        # The late event past the grace period is counted as late, in the merged table.
        table = await until(shop, "/api/analytics/tables/analytics-windows",
                            lambda b: sum(r["late"] for r in b["rows"]) == 1)
        assert sum(r["product_views"] for r in table["rows"]) == 4
        minutes = await until(shop, "/api/analytics/tables/analytics-minutes",
                              lambda b: bool(b["rows"]))
        assert {r["source"][0] for r in minutes["rows"]} == {"t", "o"}
        hops = await until(shop, "/api/analytics/tables/analytics-10m",
                           lambda b: max((r["purchases"] for r in b["rows"]), default=0) == 1)
        assert {r["source"] for r in hops["rows"]} == {"all"}
        assert max(r["product_views"] for r in hops["rows"]) == 4
        status, body = await shop.call("GET", "/api/analytics/tables/nope", headers=ADMIN)
        assert status == 404 and body["error"]["code"] == "not_found"

        # The live feed: a summary event at once, with the same figures.
        async with http.get(worker.url + "/api/analytics/stream?wait=3", headers={
                **ADMIN, "Accept": "text/event-stream"}) as response:
            assert response.status == 200
            first_event = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)
        assert b"event: summary" in first_event
        assert b'"purchases":1' in first_event

        await bad_tracking_batches_are_refused(http, worker.url)


async def bad_tracking_batches_are_refused(http: aiohttp.ClientSession, url: str) -> None:
    """Bad batches are refused with a clear 4xx in the one error shape; admins only read."""
    shop = Shop(http, url)
    good = {"type": "page_view", "path": "/"}
    cases: list[tuple[Any, int, str]] = [
        ({"session_id": "session-1", "events": [{"type": "purchase", "sku": "A"}]},
         422, "events.0.type"),
        ({"session_id": "session-1", "events": [good] * 101}, 422, "events"),
        ({"session_id": "session-1", "events": []}, 422, "events"),
        ({"events": [good]}, 422, "session_id"),
        ({"session_id": "bad id!", "events": [good]}, 422, "session_id"),
        ({"session_id": "session-1", "events": [{"type": "product_view",
                                                  "at": "yesterday"}]}, 422, "events.0.at"),
        ([good], 422, ""),
    ]
    for body, status, field in cases:
        got, answer = await shop.call("POST", "/api/events", json=body)
        assert got == status, (body, answer)
        assert set(answer) == {"error"} and set(answer["error"]) >= {"code", "message"}
        assert field in str(answer["error"].get("details")), answer
    async with http.post(url + "/api/events", data=b"{not json",
                         headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert set((await response.json())["error"]) >= {"code", "message"}
    async with http.post(url + "/api/events", data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
                         headers={"Content-Type": "application/json"}) as response:
        assert response.status == 413
        assert "error" in await response.json()
    # Analytics endpoints: admins only.
    for path in ("/api/analytics/summary", "/api/analytics/products/top"):
        status, _ = await shop.call("GET", path)
        assert status == 401
        status, _ = await shop.call("GET", path, headers=customer("u-1"))
        assert status == 403
    status, body = await shop.call("GET", "/api/analytics/summary?window=2d", headers=ADMIN)
    assert status == 422 and "window" in str(body["error"]["details"])
    status, body = await shop.call("GET", "/api/analytics/products/top?by=likes",
                                   headers=ADMIN)
    assert status == 422
