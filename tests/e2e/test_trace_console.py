"""An operator follows a checkout in the console: the Trace page shows, by request id and by
order id, the timeline of the gateway request and the events the agents handled; the request
id in the central log links there."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from scripts.devstack import Worker
from tests.e2e.api import call
from tests.e2e.catalog import stock_catalog
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, DESKTOP
from tests.integration.shop import ADMIN, customer

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BUYER = customer("e2e-traced-buyer")
#: The steps the timeline must show, in this order (data-kind, data-type).
STEPS = [("http", None), ("event", "order_placed"), ("event", "reserve_stock"),
         ("event", "provider_answered"), ("event", "order_confirmed"), ("event", "notify")]


def traced(url: str, trace_id: str, within: float = 30.0) -> list[dict[str, Any]]:
    """Return the trace's steps once the notification's is in (records are shipped to the
    central log asynchronously: the trace endpoint is polled up to a deadline)."""
    deadline = time.monotonic() + within
    while True:
        status, body = call(url, "GET", f"/api/admin/trace/{trace_id}", headers=ADMIN)
        assert status == 200, body
        if any(step["type"] == "notify" for step in body["steps"]):
            return list(body["steps"])
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def shown(page: Any) -> list[tuple[str, str | None]]:
    """Return the (kind, type) of the timeline's rows that are among STEPS, in the order of
    their first row (several agents handle an order_confirmed notice)."""
    rows = page.locator("#trace tbody tr")
    found = [(rows.nth(i).get_attribute("data-kind"), rows.nth(i).get_attribute("data-type"))
             for i in range(rows.count())]
    return list(dict.fromkeys(row for row in found if row in STEPS))


def test_an_operator_follows_a_checkout_on_the_trace_page(shop_worker: Worker,
                                                          pages: Any) -> None:
    url = shop_worker.url
    stock_catalog(url)
    request_id = f"e2e-{uuid.uuid4().hex}"
    status, placed = call(url, "POST", "/api/orders", headers={**BUYER, "X-Request-Id": request_id},
                          body={"items": [{"sku": "BOOK-1", "quantity": 1}],
                                "payment_method": "pm_card_ok"})
    assert status in (201, 202), placed
    traced(url, request_id)

    tab = pages("trace", url, DESKTOP)
    page = tab.page
    tab.log_in("/admin/trace", ADMIN_EMAIL, ADMIN_PASSWORD, "Trace")

    # By request id: the gateway request first, then the saga and the notification.
    page.get_by_label("Request id or order id").fill(request_id)
    page.get_by_role("button", name="Follow").click()
    expect(page.locator("#trace tr[data-kind=http]").first).to_contain_text("POST /api/orders")
    expect(page.locator("#trace tr[data-type=notify]")).to_have_count(1)
    assert shown(page) == STEPS
    tab.shot("by-request")

    # By order id: the same steps (the order's whole life, its placing request included).
    page.get_by_label("Request id or order id").fill(placed["id"])
    page.get_by_role("button", name="Follow").click()
    expect(page).to_have_url(f"{url}/admin/trace?id={placed['id']}")
    expect(page.locator("#trace-summary")).to_contain_text(request_id)
    expect(page.locator("#trace tr[data-type=notify]")).to_have_count(1)
    assert shown(page) == STEPS
    tab.shot("by-order")

    # The central log links a record's request id to its trace.
    page.get_by_role("link", name="Logs", exact=True).click()
    expect(page.get_by_role("heading", name="Central logs")).to_be_visible()
    page.get_by_label("Request, order, ticket or user id").fill(placed["id"])
    page.get_by_role("button", name="Search logs").click()
    page.locator("#logs").get_by_role("link", name=request_id).first.click()
    expect(page.get_by_role("heading", name="Trace")).to_be_visible()
    expect(page.locator("#trace tr[data-kind=http]").first).to_be_visible()
    assert tab.errors == [] and tab.unlabelled == [] and tab.too_wide == []
