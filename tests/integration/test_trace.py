"""Following one checkout through two workers: ``GET /api/admin/trace/{id}`` by its request id
and by its order id names the gateway request, the saga's events on ``orders``, ``inventory``
and ``payments``, the notification and the mail, in order; by order id it also follows the
order's later requests (its shipping); ``/api/admin/logs`` finds the records by the order
they name.

The customer and the admin call different workers, so the steps come from both; the trace is
read through the worker that did not take the order. The only waiting is for the records to
be shipped to the central log (asynchronous): the trace endpoint is polled up to a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import wait_for_json
from tests.integration.notify import register
from tests.integration.shop import ADMIN, Shop, customer
from tests.integration.test_notification_mail import Mailbox, free_port

pytestmark = pytest.mark.integration

#: The causal line of a checkout paid at once, as (kind, topic or path, type) per step: the
#: saga's agents, the notification of the confirmed order, its inbox, and the receipt mail.
CHECKOUT = [
    ("http", "POST /api/orders", ""),
    ("orders.saga", "orders", "order_placed"),
    ("inventory.stock", "inventory", "reserve_stock"),
    ("orders.saga", "orders", "stock_reserved"),
    ("orders.saga", "payments", "provider_answered"),
    ("notifications.orders", "orders", "order_confirmed"),
    ("notifications.inbox", "notifications", "notify"),
    ("mail", "shop.notifications", "receipt"),
]
#: Each other step the checkout causes, that must come after the step named with it.
ALSO_AFTER = {("inventory.stock", "inventory", "commit_stock"):
              ("orders.saga", "payments", "provider_answered")}
LINE = set(CHECKOUT) | set(ALSO_AFTER)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    """A real SMTP server on a free loopback port: its mailbox and URL."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


def step_key(step: dict[str, Any]) -> tuple[str, str, str]:
    """Return a step as (agent or kind, topic or path or queue, type)."""
    trace = step.get("trace") or {}
    if step["kind"] == "event":
        return (str(trace.get("agent")), str(trace.get("topic")), step["type"])
    if step["kind"] == "http":
        return ("http", step["what"], "")
    return (step["kind"], step["what"], step["type"])


async def trace(http: aiohttp.ClientSession, worker: Worker, trace_id: str,
                within: float = 30.0, also: tuple[tuple[str, str, str], ...] = (),
                ) -> dict[str, Any]:
    """Return the trace of ``trace_id`` once the checkout's steps (and ``also``) are in (log
    shipping is asynchronous), read through ``worker``."""
    deadline = time.monotonic() + within
    while True:
        async with http.get(f"{worker.url}/api/admin/trace/{trace_id}", headers=ADMIN) as answer:
            body = await answer.json()
            assert answer.status == 200, body
        keys = [step_key(step) for step in body["steps"]]
        if set(keys) >= LINE | set(also) and body["complete"]:
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {trace_id} incomplete: {keys}")
        await asyncio.sleep(0.2)


def checkout_line(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return the steps of the checkout's causal line, in the trace's order."""
    return [key for key in map(step_key, body["steps"]) if key in set(CHECKOUT)]


async def test_a_checkout_is_followed_through_two_workers(
    workers: WorkerFactory, mailbox: tuple[Mailbox, str],
) -> None:
    box, smtp_url = mailbox
    settings = {"SHOP_SMTP_URL": smtp_url, "SHOP_PASSWORD_HASH_COST": "light"}
    a, b = workers.start("a", **settings), workers.start("b", **settings)
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    async with aiohttp.ClientSession() as http:
        for worker in (a, b):
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=30)
        buyer = await register(http, b.url, "traced@example.com", "Tracy")
        shop_a, shop_b = Shop(http, a.url), Shop(http, b.url)
        await shop_a.add_product("TRACE-1", 5, price_cents=1250)
        await shop_b.wait_for_catalog(1)

        request_id = f"checkout-{uuid.uuid4().hex}"
        async with http.post(f"{b.url}/api/orders", headers={
                **customer(buyer), "X-Request-Id": request_id}, json={
                "items": [{"sku": "TRACE-1", "quantity": 1}],
                "payment_method": "pm_card_ok"}) as answer:
            placed = await answer.json()
            assert answer.status in (201, 202), placed
            assert answer.headers["X-Request-Id"] == request_id
        order = await shop_b.settled(buyer, placed["id"])
        assert order["status"] == "confirmed", order
        await box.wait_for("traced@example.com")

        by_request = await trace(http, a, request_id)
        assert checkout_line(by_request) == CHECKOUT
        keys = [step_key(step) for step in by_request["steps"]]
        for step, before in ALSO_AFTER.items():
            assert keys.index(before) < keys.index(step), keys
        steps = by_request["steps"]
        assert all(step["request_id"] == request_id for step in steps)
        # Read through a, the trace holds b's records: the POST was answered by b. Which worker
        # handled each later step follows the partitions' assignment, which may give b every
        # partition the checkout touches (a few runs in a hundred).
        handled_by = {step["worker"] for step in steps}
        assert b.url in handled_by and handled_by <= {a.url, b.url}
        assert [step["at"] for step in steps] == sorted(step["at"] for step in steps)
        assert by_request["requests"] == [request_id]
        [placing] = [s for s in steps if step_key(s) == CHECKOUT[0]]
        assert placing["trace"]["status"] == answer.status and placing["worker"] == b.url

        # The order's whole life: its shipping, another request on the other worker, too.
        shipping = f"ship-{uuid.uuid4().hex}"
        async with http.post(f"{a.url}/api/orders/{placed['id']}/ship",
                             headers={**ADMIN, "X-Request-Id": shipping}) as answer:
            assert answer.status in (200, 202), await answer.json()
        shipped = ("orders.saga", "orders", "ship_requested")
        ship_step = ("http", f"POST /api/orders/{placed['id']}/ship", "")
        by_order = await trace(http, b, placed["id"], also=(shipped, ship_step))
        # the shipping's own notification is a notify step too: the checkout's are its request's
        checkout_steps = [s for s in by_order["steps"] if s["request_id"] == request_id]
        assert checkout_line({"steps": checkout_steps}) == CHECKOUT
        assert by_order["requests"] == [request_id, shipping]
        keys = [step_key(step) for step in by_order["steps"]]
        assert keys.index(ship_step) < keys.index(shipped)
        assert keys.index(CHECKOUT[-1]) < keys.index(shipped)

        # The central log finds the records that name the order, and only those.
        async with http.get(f"{a.url}/api/admin/logs?order_id={placed['id']}&limit=1000",
                            headers=ADMIN) as answer:
            named = await answer.json()
            assert answer.status == 200, named
        assert named["items"] and all(r["order_id"] == placed["id"] for r in named["items"])
        async with http.get(f"{a.url}/api/admin/trace/not%20an%20id", headers=ADMIN) as answer:
            refused = await answer.json()
            assert (answer.status, refused["error"]["code"]) == (400, "bad_request")
        async with http.get(f"{a.url}/api/admin/trace/{request_id}",
                            headers=customer(buyer)) as answer:
            assert answer.status == 403
