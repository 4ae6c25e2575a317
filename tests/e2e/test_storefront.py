"""The customer's journey through the storefront in a real browser, at phone width:
register, search, two products into the cart, check out, the order page turns to
``confirmed`` without a reload, the notification arrives at the bell; a support ticket about
the order is answered live; a refused access token is refreshed; the behaviour was tracked."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from scripts.devstack import Worker
from tests.e2e.api import call
from tests.e2e.catalog import stock_catalog
from tests.e2e.conftest import PHONE
from tests.integration.shop import ADMIN, bearer

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_customer_registers_searches_buys_and_sees_the_order_confirmed_live(
    shop_worker: Worker, pages: Any,
) -> None:
    stock_catalog(shop_worker.url)
    tab = pages("storefront", shop_worker.url, PHONE)
    page = tab.page
    started = time.monotonic()

    page.goto("/")
    expect(page.locator("#products [data-sku]").first).to_be_visible()
    expect(page.get_by_role("link", name="books")).to_be_visible()
    tab.shot("home")

    # Register (the storefront logs in right after).
    page.get_by_role("link", name="Register").click()
    page.get_by_label("Name").fill("Ada Buyer")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("a good password")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("link", name="Account")).to_be_visible()
    expect(page.locator("#bell-wrap")).to_be_visible()

    # Search, add the first product from the results, the second from its own page.
    page.get_by_label("Search products").fill("garden")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#result-count")).to_have_text("2 products")
    tab.shot("search")
    page.get_by_role("button", name="Add Garden Book to cart").click()
    expect(page.locator("#cart-count")).to_have_text("1")
    page.get_by_role("link", name="Garden Trowel").click()
    expect(page.get_by_role("heading", name="Garden Trowel")).to_be_visible()
    expect(page.locator("#availability")).to_have_text("In stock")
    tab.shot("product")
    page.get_by_role("button", name="Add to cart", exact=True).click()
    expect(page.locator("#cart-count")).to_have_text("2")

    # The cart, then checkout with a payment method.
    page.locator("#cart-link").click()
    expect(page.locator("#cart tbody tr")).to_have_count(2)
    tab.shot("cart")
    page.get_by_role("link", name="Check out").click()
    page.get_by_label("Payment method").select_option("pm_card_ok")
    tab.shot("checkout")
    page.get_by_role("button", name="Place order").click()

    # The order page follows the saga: it shows the order, then turns to confirmed, with
    # no reload (a marker set on the window before would be gone after one).
    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f]+$"))
    page.evaluate("window.__noReload = true")
    status = page.locator("#order-status [data-status]")
    expect(status).to_have_attribute("data-status", "confirmed", timeout=20_000)
    assert page.evaluate("window.__noReload") is True
    expect(page.locator("#order-total")).to_have_text("€24.00")
    tab.shot("order")

    # The notification arrives on the bell (SSE), and the bell lists it.
    expect(page.locator("#bell-count")).not_to_have_text("0")
    page.locator("#bell").click()
    expect(page.locator("#bell-panel [data-kind=order_confirmed]")).to_contain_text(
        "Order confirmed")
    tab.shot("bell")

    # The order history lists it; the cart is empty again.
    page.locator("#bell").click()
    page.get_by_role("link", name="Orders").click()
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    expect(page.locator("#cart-count")).to_have_text("0")
    tab.shot("orders")

    # Support: a ticket about the order, answered by support staff while the customer looks
    # at it (the answer shows up without a reload); the customer replies.
    page.locator("#orders tbody a").first.click()
    page.get_by_role("link", name="Get help with this order").click()
    expect(page.get_by_label("Order (optional)")).not_to_have_value("")
    page.get_by_label("Subject").fill("Gift wrap?")
    page.get_by_label("How can we help?").fill("Could the trowel be gift wrapped?")
    page.get_by_role("button", name="Open ticket").click()
    expect(page.get_by_role("heading", name="Gift wrap?")).to_be_visible()
    ticket_id = page.url.rsplit("/", 1)[1]
    # The ticket was answered 201 once written: staff can answer it at once.
    status, answer = call(shop_worker.url, "POST",
                          f"/api/support/tickets/{ticket_id}/comments",
                          headers=bearer("agent-1", "support"), body={"body": "Gladly!"})
    assert status == 200, answer
    expect(page.locator("#comments")).to_contain_text("Gladly!")
    page.get_by_label("Your reply").fill("Thank you.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#comments")).to_contain_text("Thank you.")
    tab.shot("ticket")
    # An access token the shop refuses (a bad signature) is refreshed once with the refresh
    # token, transparently; the refused call is the one console message of this step.
    broken = page.evaluate("""() => {
      const token = localStorage.getItem('shop.access_token');
      const broken = token.slice(0, -6) + (token.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
      localStorage.setItem('shop.access_token', broken);
      return broken;
    }""")
    seen = len(tab.errors)
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_text("Signed in as ada@example.com")).to_be_visible()
    assert page.evaluate("localStorage.getItem('shop.access_token')") != broken
    refused = tab.errors[seen:]
    assert refused and all("401" in e for e in refused), refused
    del tab.errors[seen:]

    # The storefront tracked the session's behaviour (POST /api/events batches).
    page.evaluate("window.dispatchEvent(new Event('pagehide'))")  # send what is queued
    session = page.evaluate("localStorage.getItem('shop.session_id')")
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, activity = call(shop_worker.url, "GET", f"/api/analytics/sessions/{session}",
                                headers=ADMIN)
        counts = activity.get("counts", {}) if status == 200 else {}
        if (counts.get("add_to_cart", 0) >= 2 and counts.get("product_view", 0) >= 1
                and counts.get("search", 0) >= 1 and counts.get("page_view", 0) >= 1):
            break
        time.sleep(0.3)
    assert counts.get("add_to_cart") == 2 and counts.get("product_view", 0) >= 1, counts
    assert counts.get("search", 0) >= 1 and counts.get("page_view", 0) >= 1, counts
    print(f"customer journey: {time.monotonic() - started:.1f} s in the browser")
    assert tab.errors == []
    assert tab.unlabelled == [] and tab.too_wide == []
