"""Bad input to the order, catalog and inventory APIs: a 4xx in the one error shape, never 5xx."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

ALICE = customer("alice")
GOOD_LINE = {"sku": "BOOK-0001", "quantity": 1}

#: (method, path, headers, body: JSON value or raw bytes, expected status)
CASES: list[tuple[str, str, dict[str, str], Any, int]] = [
    ("POST", "/api/orders", ALICE, {"items": [{"sku": "NOPE-404", "quantity": 1}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [{"sku": "BOOK-0001", "quantity": 0}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [{"sku": "BOOK-0001", "quantity": -2}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [{"sku": "BOOK-0001", "quantity": 10**12}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [GOOD_LINE] * 2 + [{"sku": "BOOK-0001",
                                                                 "quantity": 99}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [], "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [GOOD_LINE]}, 422),
    ("POST", "/api/orders", ALICE, {"items": [GOOD_LINE], "payment_method": "4242424242424242"},
     422),
    ("POST", "/api/orders", ALICE, {"items": "BOOK-0001", "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, {"items": [{"sku": 7, "quantity": "one"}],
                                    "payment_method": "pm_card_ok"}, 422),
    ("POST", "/api/orders", ALICE, [1, 2, 3], 422),
    ("POST", "/api/orders", ALICE, b'{"items": [', 400),
    ("POST", "/api/orders", ALICE, b"\xff\xfe\x00", 400),
    ("POST", "/api/orders", {}, {"items": [GOOD_LINE], "payment_method": "pm_card_ok"}, 401),
    ("POST", "/api/orders", ALICE, {"items": [GOOD_LINE], "payment_method": "pm_card_ok",
                                    "promotion_code": "FREE"}, 422),
    ("GET", "/api/orders/not-an-order", ALICE, None, 404),
    ("GET", "/api/orders/not-an-order?wait=forever", ALICE, None, 422),
    ("POST", "/api/orders/not-an-order/cancel", ALICE, None, 404),
    ("POST", "/api/orders/not-an-order/ship", ALICE, None, 403),
    ("GET", "/api/payments/not-an-order", ALICE, None, 404),
    ("GET", "/api/products?page=0", {}, None, 422),
    ("GET", "/api/products?per_page=100000", {}, None, 422),
    ("GET", "/api/products/NOPE-404", {}, None, 404),
    ("POST", "/api/products", ALICE, {"sku": "X-1", "name": "x", "category": "books",
                                      "price_cents": 1}, 403),
    ("POST", "/api/products", ADMIN, {"sku": "lower case", "name": "x", "category": "books",
                                      "price_cents": 1}, 422),
    ("POST", "/api/products", ADMIN, {"sku": "BOOK-0002", "name": "x", "category": "books",
                                      "price_cents": -5}, 422),
    ("POST", "/api/products", ADMIN, {"sku": "BOOK-0001", "name": "again", "category": "books",
                                      "price_cents": 5}, 409),
    ("PATCH", "/api/products/NOPE-404", ADMIN, {"name": "x"}, 404),
    ("POST", "/api/inventory/BOOK-0001/restock", ADMIN, {"quantity": 0}, 422),
    ("POST", "/api/inventory/NOPE-404/restock", ADMIN, {"quantity": 3}, 404),
    ("GET", "/api/inventory/BOOK-0001", ALICE, None, 403),
    ("DELETE", "/api/orders", ALICE, None, 405),
    ("GET", "/api/orders", {"Authorization": "Bearer not-a-token"}, None, 401),
    ("GET", "/api/orders", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, None, 401),
    ("GET", "/api/orders", {"X-User-Id": "alice"}, None, 401),  # no token: anonymous
    ("GET", "/api/orders", {"Authorization": ALICE["Authorization"][:-3] + "abc"}, None, 401),
]


async def test_bad_input_gets_a_4xx_in_the_error_shape(workers: WorkerFactory) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product("BOOK-0001", 5)
        await shop.wait_for_catalog(1)
        failures = []
        for method, path, headers, body, expected in CASES:
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(body, bytes):
                kwargs["data"] = body
            elif body is not None:
                kwargs["json"] = body
            async with http.request(method, worker.url + path, **kwargs) as response:
                document = await response.json(content_type=None)
            shape = (isinstance(document, dict) and set(document) == {"error"}
                     and set(document["error"]) == {"code", "message", "details"})
            if response.status != expected or not shape:
                failures.append((method, path, body, expected, response.status, document))
    assert failures == []
