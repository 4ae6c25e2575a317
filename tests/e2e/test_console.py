"""The admin's journey through the console in a real browser: log in, see a purchase arrive on
the live dashboard, ship it, restock, create a promotion, answer a customer's ticket; every
section opens without a console error (screenshots of each, and of the dashboard at phone
width)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from scripts.devstack import Worker
from tests.e2e.api import call
from tests.e2e.catalog import stock_catalog
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, DESKTOP, PHONE
from tests.integration.shop import ADMIN, customer

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BUYER = customer("e2e-buyer")


def test_admin_sees_a_purchase_live_restocks_creates_a_promotion_and_answers_a_ticket(
    shop_worker: Worker, pages: Any,
) -> None:
    url = shop_worker.url
    stock_catalog(url)
    tab = pages("console", url, DESKTOP)
    page = tab.page
    started = time.monotonic()

    tab.log_in("/admin", ADMIN_EMAIL, ADMIN_PASSWORD, "Dashboard")

    # A customer buys while the dashboard is open: it shows the purchase without a reload.
    analytics = page.locator("#kpis")
    expect(analytics.or_(page.locator("#analytics-missing"))).to_be_visible()
    live_analytics = analytics.is_visible()
    counter = page.locator("#kpi-purchases" if live_analytics else "#report-confirmed")
    expect(counter).to_be_visible()
    before = int(counter.inner_text())
    status, placed = call(url, "POST", "/api/orders", headers=BUYER, body={
        "items": [{"sku": "BOOK-2", "quantity": 2}], "payment_method": "pm_card_ok"})
    assert status == 201, placed
    expect(counter).not_to_have_text(str(before), timeout=20_000)
    assert int(counter.inner_text()) > before
    if live_analytics:
        expect(page.locator("#top-products [data-sku=BOOK-2]")).to_be_visible()
    tab.shot("dashboard")

    # Orders: open the purchase by its id and ship it.
    page.get_by_role("link", name="Orders", exact=True).click()
    page.get_by_label("Order id").fill(placed["id"])
    page.get_by_role("button", name="Open order").click()
    expect(page.locator("#admin-order-status [data-status]")).to_have_attribute(
        "data-status", "confirmed")
    page.get_by_role("button", name="Ship").click()
    expect(page.locator("#admin-order-status [data-status]")).to_have_attribute(
        "data-status", "shipped")
    tab.shot("orders")

    # Catalog: restock the product that is short.
    page.get_by_role("link", name="Catalog").click()
    stock = page.locator("#catalog [data-stock-of=TOYS-1]")
    expect(stock).to_have_attribute("data-available", "3")
    page.get_by_label("Units to add to Red Kite").fill("7")
    page.get_by_role("button", name="Restock Red Kite").click()
    expect(stock).to_have_attribute("data-available", "10")
    assert call(url, "GET", "/api/inventory/TOYS-1", headers=ADMIN)[1]["available"] == 10
    tab.shot("catalog")

    # Promotions: create one; it is listed and the API knows it.
    page.get_by_role("link", name="Promotions").click()
    page.get_by_label("Code").fill("E2E10")
    page.get_by_label("Kind").select_option("percent")
    page.get_by_label("Value (percent, or cents off)").fill("10")
    page.get_by_role("button", name="Create promotion").click()
    expect(page.locator("#promotions [data-code=E2E10]")).to_contain_text("10% off")
    status, promotion = call(url, "GET", "/api/promotions/E2E10", headers=ADMIN)
    assert status == 200 and promotion["kind"] == "percent" and promotion["value"] == 10
    tab.shot("promotions")

    # Support: a customer's ticket arrives in the queue; the admin answers it.
    page.get_by_role("link", name="Support").click()
    expect(page.locator("#sla")).to_be_visible()
    status, ticket = call(url, "POST", "/api/support/tickets", headers=BUYER, body={
        "subject": "Where is my parcel?", "body": "Ordered two cook books.",
        "order_id": placed["id"]})
    assert status == 201, ticket
    expect(page.locator("#support-feed [data-kind=ticket_opened]")).to_contain_text(
        "Where is my parcel?")
    tab.shot("support")
    page.get_by_role("link", name="Where is my parcel?").first.click()
    page.get_by_label("Answer").fill("It left our warehouse today.")
    page.get_by_role("button", name="Send answer").click()
    expect(page.locator("#comments")).to_contain_text("It left our warehouse today.")
    tab.shot("ticket")
    status, seen = call(url, "GET", f"/api/support/tickets/{ticket['id']}", headers=BUYER)
    assert status == 200 and [c["body"] for c in seen["comments"]] == [
        "It left our warehouse today."]

    # The operations sections open (and say what they show).
    for section, heading in (("Logs", "Central logs"), ("Dead letters", "Dead letters"),
                             ("Tasks", "Task queues")):
        page.get_by_role("link", name=section, exact=True).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        expect(page.locator("main table").first).to_be_visible()
        tab.shot(section.lower().replace(" ", "-"))

    # The console at phone width.
    phone = pages("console-phone", url, PHONE)
    token = page.evaluate("localStorage.getItem('shop.access_token')")
    phone.page.add_init_script(f"localStorage.setItem('shop.access_token', {json.dumps(token)});")
    phone.page.goto("/admin")
    expect(phone.page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(phone.page.locator("#kpis, #analytics-missing").first).to_be_visible()
    phone.shot("dashboard")
    print(f"admin journey: {time.monotonic() - started:.1f} s in the browser "
          f"(live analytics: {live_analytics})")
    assert tab.errors == [] and phone.errors == []
    assert tab.unlabelled == [] and phone.unlabelled == []
    assert tab.too_wide == [] and phone.too_wide == []
