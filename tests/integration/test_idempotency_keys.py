"""Idempotency-Key on real brokers and two workers: a retry gives the same order or ticket, a
reused key with another body is refused (422, the one error shape), keys are per customer.

Each keyed request is sent through both workers in turn, so the owner of the key's order
answers some directly and others forwarded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.http import wait_for_json
from tests.integration.shop import Shop, customer

pytestmark = pytest.mark.integration

ANN, BOB = "idem-ann", "idem-bob"
SKUS = ("IDEM-A", "IDEM-B")
TICKETS = "/api/support/tickets"


def order(sku: str, quantity: int) -> dict[str, Any]:
    return {"items": [{"sku": sku, "quantity": quantity}], "payment_method": "pm_card_ok"}


async def keyed(shop: Shop, method: str, path: str, user: str, key: str,
                body: dict[str, Any]) -> tuple[int, Any]:
    """Send a keyed request as ``user``; retry as a client should on 503 and 409 (the owner
    is being reassigned; the key's first request is still being processed)."""
    headers = {**customer(user), "Idempotency-Key": key}
    for _ in range(50):
        status, answer = await shop.call(method, path, headers=headers, json=body)
        if status not in (409, 503):
            return status, answer
        await asyncio.sleep(0.2)
    return status, answer


def error_code(body: Any) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


async def test_a_key_gives_one_order_or_ticket_per_body_and_customer(
    workers: WorkerFactory,
) -> None:
    a, b = workers.start("a"), workers.start("b")
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    async with aiohttp.ClientSession() as http:
        for worker in (a, b):
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=30)
        shops = [Shop(http, a.url), Shop(http, b.url)]
        for sku in SKUS:
            await shops[0].add_product(sku, 100)
        for shop in shops:
            await shop.wait_for_catalog(len(SKUS))

        # The same key and body, through either worker, in any key order: one order, 201.
        first = await keyed(shops[0], "POST", "/api/orders", ANN, "k-1", order("IDEM-A", 2))
        assert first[0] == 201, first
        order_id = first[1]["id"]
        reordered = {"payment_method": "pm_card_ok", "items": [{"quantity": 2, "sku": "IDEM-A"}]}
        for shop in (*shops, *shops):
            status, again = await keyed(shop, "POST", "/api/orders", ANN, "k-1", reordered)
            assert (status, again["id"], again["items"]) == (201, order_id, first[1]["items"])

        # The same key with another body: 422 through either worker, the order unchanged.
        for shop in shops:
            status, body = await keyed(shop, "POST", "/api/orders", ANN, "k-1",
                                       order("IDEM-A", 3))
            assert status == 422 and error_code(body) == "idempotency_key_reused", body
        placed = await shops[1].settled(ANN, order_id)
        assert [(i["sku"], i["quantity"]) for i in placed["items"]] == [("IDEM-A", 2)]

        # Keys are per customer: Bob's k-1 is another order.
        status, body = await keyed(shops[1], "POST", "/api/orders", BOB, "k-1",
                                   order("IDEM-A", 2))
        assert status == 201 and body["id"] != order_id, body
        bobs = await shops[0].settled(BOB, body["id"])
        assert bobs["user_id"] == BOB

        # Two bodies racing with one key through the two workers: one wins (201), the other
        # learns it lost (422); the order is the winner's.
        for n in range(4):
            key = f"race-{n}"
            answers = await asyncio.gather(
                keyed(shops[0], "POST", "/api/orders", ANN, key, order("IDEM-A", 1)),
                keyed(shops[1], "POST", "/api/orders", ANN, key, order("IDEM-B", 1)))
            assert sorted(status for status, _ in answers) == [201, 422], answers
            winner = 0 if answers[0][0] == 201 else 1
            assert error_code(answers[1 - winner][1]) == "idempotency_key_reused"
            won = await shops[0].settled(ANN, answers[winner][1]["id"])
            assert [i["sku"] for i in won["items"]] == [SKUS[winner]], (answers, won)

        status, mine = await shops[0].call("GET", "/api/orders?per_page=50",
                                           headers=customer(ANN))
        assert status == 200 and mine["total"] == 5, mine  # k-1 and the four races

        # Tickets: the same rule.
        ticket = {"subject": "Where is it?", "body": "It has been a week."}
        status, opened = await keyed(shops[0], "POST", TICKETS, ANN, "t-1", ticket)
        assert status == 201 and "_request_digest" not in opened, opened
        for shop in shops:
            status, again = await keyed(shop, "POST", TICKETS, ANN, "t-1",
                                        dict(reversed(ticket.items())))
            assert status == 201 and again["id"] == opened["id"], again
            status, body = await keyed(shop, "POST", TICKETS, ANN, "t-1",
                                       {**ticket, "body": "Another question."})
            assert status == 422 and error_code(body) == "idempotency_key_reused", body
        status, bobs_ticket = await keyed(shops[1], "POST", TICKETS, BOB, "t-1", ticket)
        assert status == 201 and bobs_ticket["id"] != opened["id"], bobs_ticket
        status, shown = await shops[1].call("GET", f"{TICKETS}/{opened['id']}",
                                            headers=customer(ANN))
        assert status == 200 and shown["body"] == ticket["body"], shown
        assert "_request_digest" not in shown
