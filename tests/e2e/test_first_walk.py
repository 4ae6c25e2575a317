"""A newcomer's first walk through the shop ``make run`` starts: the demo catalog with its
pictures, a product with its suggestions, the cart, checkout, the order page, the console and
the live analytics, with no console error and no failed request on any of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from scripts.devstack import rabbit_vhost
from scripts.run import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
from tests.e2e.conftest import DESKTOP, PHONE
from tests.integration.launcher import running_shop

pytestmark = [pytest.mark.integration, pytest.mark.browser]

#: Requests the browser itself cancels when it leaves a page: a live feed (server-sent
#: events), or a read still in flight when the walk clicks on. A server's failure is an answer
#: of 400 or more, or another network error (refused, reset), and stays a failure.
LEFT_BEHIND = re.compile(r"net::ERR_ABORTED$")


def failures(tab: Any) -> list[str]:
    return [f for f in tab.failed if not LEFT_BEHIND.search(f)]


def pictures_drawn(page: Any) -> list[str]:
    """Return the product pictures of the page that did not load (scrolled through first:
    the pictures are loaded lazily)."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("[...document.images].every((img) => img.complete)")
    page.evaluate("window.scrollTo(0, 0)")
    return list(page.evaluate("""() => [...document.images]
        .filter((img) => img.src.includes('/static/products/'))
        .filter((img) => img.naturalWidth === 0).map((img) => img.src)"""))


def test_a_first_walk_through_the_demo_shop_has_no_error(
    rabbit_url: str, tmp_path: Path, pages: Any,
) -> None:
    with rabbit_vhost(rabbit_url) as vhost, running_shop(
            tmp_path / "run", vhost, SHOP_DEMO_SHOPPERS="8") as shop:
        tab = pages("walk", shop.url, PHONE)
        page = tab.page

        page.goto("/")
        expect(page.locator("#products [data-sku]").first).to_be_visible()
        page.wait_for_load_state("load")
        assert page.locator("#products img").count() > 0
        assert pictures_drawn(page) == []
        tab.shot("home")

        page.get_by_role("link", name="Register").click()
        page.get_by_label("Name").fill("Nina Newcomer")
        page.get_by_label("Email").fill("nina@example.com")
        page.get_by_label("Password").fill("a good password")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("link", name="Account")).to_be_visible()

        # A product: its picture, and suggestions whether or not the shop has history yet.
        page.goto("/products/BOOK-0001")
        expect(page.get_by_role("heading", name="The Quiet Orchard")).to_be_visible()
        expect(page.locator("#similar h2")).to_be_visible()
        expect(page.locator("#recommended h2")).to_be_visible()
        page.wait_for_load_state("load")
        assert pictures_drawn(page) == []
        tab.shot("product")
        page.get_by_role("button", name="Add to cart", exact=True).click()
        expect(page.locator("#cart-count")).to_have_text("1")

        page.locator("#cart-link").click()
        expect(page.locator("#cart tbody tr")).to_have_count(1)
        tab.shot("cart")
        page.get_by_role("link", name="Check out").click()
        page.get_by_label("Payment method").select_option("pm_card_ok")
        tab.shot("checkout")
        page.get_by_role("button", name="Place order").click()
        expect(page).to_have_url(re.compile(r"/orders/[0-9a-f]+$"))
        expect(page.locator("#order-status [data-status]")).to_have_attribute(
            "data-status", "confirmed", timeout=30_000)
        tab.shot("order")

        # The console and the live analytics, with the development admin make run printed.
        admin = pages("walk-console", shop.url, DESKTOP)
        console = admin.page
        admin.log_in("/admin", DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, "Dashboard")
        admin.shot("dashboard")
        console.goto("/analytics")
        expect(console.locator("#purchases")).to_be_visible()
        expect(console.locator("#products tr").first).to_be_visible(timeout=30_000)
        admin.shot("analytics")

        assert tab.errors == [] and admin.errors == []
        assert failures(tab) == [] and failures(admin) == []
