"""A small HTTP client of the shop for integration tests (admin and customers by header)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from config.settings import DEV_JWT_SECRET
from web.tokens import issue_access_token

__all__ = ["ADMIN", "Shop", "bearer", "customer", "is_settled"]

def is_settled(status: int, body: Any) -> bool:
    """Return True if ``GET /api/orders/{id}`` answered with an order past the saga's wait."""
    return status == 200 and body["status"] not in ("placed", "reserved")


def bearer(user_id: str, *roles: str) -> dict[str, str]:
    """Return the headers of a signed-in ``user_id`` (a token signed as the test workers sign:
    they run with the development JWT secret)."""
    token = issue_access_token(user_id, roles, secret=DEV_JWT_SECRET, ttl=3600)
    return {"Authorization": f"Bearer {token}"}


def customer(user_id: str) -> dict[str, str]:
    """Return the headers of customer ``user_id``."""
    return bearer(user_id, "customer")


ADMIN = bearer("admin-1", "admin")

#: The longest a request may go unanswered before a test fails naming it (aiohttp's own
#: default, 5 minutes, is pytest's timeout for a whole test: a hang would name nothing).
CALL_TIMEOUT_S = 60.0
CALL_TIMEOUT = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)


class Shop:
    """Calls one worker's API."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.url = base_url

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                   json: Any = None) -> tuple[int, Any]:
        """Return (status, JSON body) of one request; fail naming it if no answer comes within
        CALL_TIMEOUT_S (a view waits SHOP_WRITE_WAIT_S or ``?wait=`` at the most)."""
        try:
            async with self.http.request(method, self.url + path, headers=headers, json=json,
                                         timeout=CALL_TIMEOUT) as response:
                return response.status, await response.json()
        except TimeoutError:
            raise AssertionError(f"{method} {path} got no answer within {CALL_TIMEOUT_S} s "
                                 f"from {self.url}") from None

    async def add_product(self, sku: str, stock: int, *, price_cents: int = 1000,
                          category: str = "books") -> None:
        """Create a product with ``stock`` units (admin)."""
        async with self.http.post(self.url + "/api/products", headers=ADMIN, json={
                "sku": sku, "name": f"Product {sku}", "category": category,
                "price_cents": price_cents, "initial_stock": stock}) as response:
            status, body = response.status, await response.json()
            position = response.headers.get("Shop-Position")
        if status == 202:  # applied later than SHOP_WRITE_WAIT_S (a loaded machine): as a
            # client does, read it back with the write's position, which waits until applied
            status, body = await self.call("GET", f"/api/products/{sku}",
                                           headers={**ADMIN, "Shop-Position": str(position)})
            assert status == 200, body
            return
        assert status == 201, body

    async def stock(self, sku: str) -> dict[str, Any]:
        """Return the exact stock of ``sku`` (admin), retrying while it is routed."""
        for _ in range(50):
            status, body = await self.call("GET", f"/api/inventory/{sku}", headers=ADMIN)
            if status == 200:
                return dict(body)
            await asyncio.sleep(0.2)
        raise AssertionError(f"no stock for {sku}: {status} {body}")

    async def wait_for_catalog(self, count: int, within: float = 20.0) -> None:
        """Wait until the catalog lists ``count`` products."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, body = await self.call("GET", "/api/products?per_page=1")
            if status == 200 and body["total"] >= count:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"the catalog did not reach {count} products")

    async def place(self, user_id: str, items: list[tuple[str, int]], method: str = "pm_card_ok",
                    *, idempotency_key: str | None = None, **extra: Any) -> tuple[int, Any]:
        """Place an order; return (status, body)."""
        headers = customer(user_id)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return await self.call("POST", "/api/orders", headers=headers, json={
            "items": [{"sku": s, "quantity": q} for s, q in items], "payment_method": method,
            **extra})

    async def ended(self, user_id: str, order_id: str, within: float = 30.0) -> dict[str, Any]:
        """Return the order once it has ended: settled and no longer confirmed (an accepted
        cancel is on its way)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            order = await self.settled(user_id, order_id, within)
            if order["status"] != "confirmed":
                return order
            await asyncio.sleep(0.1)
        raise AssertionError(f"order {order_id} is still confirmed after {within} s")

    async def settled(self, user_id: str, order_id: str, within: float = 30.0) -> dict[str, Any]:
        """Return the order once it has settled (GET ?wait)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, body = await self.call("GET", f"/api/orders/{order_id}?wait=5",
                                           headers=customer(user_id))
            if is_settled(status, body):
                return dict(body)
            await asyncio.sleep(0.1)
        raise AssertionError(f"order {order_id} did not settle: {status} {body}")
