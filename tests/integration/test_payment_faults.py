"""Provider faults on a real broker and worker: each payment ends as it should, no rebalance.

One worker, a short call timeout, three tries and a short backoff. The simulated provider's
methods stand for the faults (models/provider.py): a flaky charge is confirmed on its third
try; a charge that never answers in time fails as ``provider_unavailable`` after three tries
(the stock is released) and is dead-lettered; a late decline fails at its first answer, never
retried; a refund that fails twice is made on its third try (the order is cancelled and
refunded); a refund that always fails is left ``refund_failed`` and dead-lettered. The
provider's ledger (``GET /api/admin/payments/{id}/provider``) shows one successful charge per
charged order, and the attempts it saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration

TRIES = 3
SKU = "FAULT-0001"
STOCK = 10


async def until(probe: Callable[[], Any], ok: Callable[[Any], bool], what: str,
                within: float = 30.0) -> Any:
    """Return ``await probe()`` once ``ok`` says so; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if ok(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {found}")
        await asyncio.sleep(0.1)


async def provider_ledger(shop: Shop, order_id: str) -> dict[str, Any]:
    """Return the provider's ledger of ``order_id`` with its payment row (admin)."""
    status, body = await shop.call("GET", f"/api/admin/payments/{order_id}/provider",
                                   headers=ADMIN)
    return dict(body) if status == 200 else {"status": status, "body": body}


def payment_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda ledger: (ledger.get("payment") or {}).get("status") == status


def succeeded_charges(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in ledger["charges"] if c["status"] == "succeeded"]


async def dead_letters(shop: Shop) -> list[dict[str, Any]]:
    status, page = await shop.call("GET", "/api/admin/dead-letters?agent=orders.saga",
                                   headers=ADMIN)
    assert status == 200, page
    return list(page["items"])


async def test_each_provider_fault_ends_as_it_should(workers: WorkerFactory) -> None:
    worker = workers.start("w1", SHOP_PAYMENT_CALL_TIMEOUT="0.5", SHOP_PAYMENT_TRIES=str(TRIES),
                           SHOP_PAYMENT_BACKOFF="0.1", SHOP_PAYMENT_SLOW_SECONDS="0.1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        await shop.add_product(SKU, STOCK)
        await shop.wait_for_catalog(1)
        methods = ("pm_card_flaky", "pm_card_timeout", "pm_card_declined_late",
                   "pm_card_refund_flaky", "pm_card_refund_fails")
        ids: dict[str, str] = {}
        for method in methods:
            status, body = await shop.place("dana", [(SKU, 1)], method)
            assert status == 201, body
            ids[method] = body["id"]
        orders = {m: await shop.settled("dana", oid) for m, oid in ids.items()}

        # A flaky charge is confirmed on its third try, charged once.
        assert orders["pm_card_flaky"]["status"] == "confirmed"
        flaky = await provider_ledger(shop, ids["pm_card_flaky"])
        [charge] = flaky["charges"]
        assert (charge["status"], charge["attempts"]) == ("succeeded", TRIES)
        assert flaky["payment"]["charge_id"] == charge["id"]
        assert (flaky["payment"]["status"], flaky["payment"]["attempts"]) == ("succeeded", 2)

        # A charge that never answers in time fails after its last try; nothing is charged.
        timed_out = orders["pm_card_timeout"]
        assert (timed_out["status"], timed_out["reason"]) == ("payment_failed",
                                                              "provider_unavailable")
        ledger = await provider_ledger(shop, ids["pm_card_timeout"])
        assert [(c["status"], c["attempts"]) for c in ledger["charges"]] == [
            ("processing", TRIES)]
        payment = ledger["payment"]
        assert (payment["status"], payment["reason"], payment["attempts"]) == (
            "failed", "provider_unavailable", TRIES)
        assert payment["last_error"].startswith("timeout: ")

        # A late decline is an answer: final at the first try.
        declined = orders["pm_card_declined_late"]
        assert (declined["status"], declined["reason"]) == ("payment_failed", "card_declined")
        ledger = await provider_ledger(shop, ids["pm_card_declined_late"])
        assert [(c["status"], c["reason"], c["attempts"]) for c in ledger["charges"]] == [
            ("failed", "card_declined", 1)]
        assert (ledger["payment"]["status"], ledger["payment"]["attempts"]) == ("failed", 0)

        # The two refund cards are charged; their orders are cancelled.
        for method in ("pm_card_refund_flaky", "pm_card_refund_fails"):
            assert orders[method]["status"] == "confirmed"
            status, body = await shop.call("POST", f"/api/orders/{ids[method]}/cancel",
                                           headers=customer("dana"))
            assert status == 200, body
            assert (await shop.ended("dana", ids[method]))["status"] == "cancelled"

        # A refund that fails twice is made on its third try.
        refunded = await until(lambda: provider_ledger(shop, ids["pm_card_refund_flaky"]),
                               payment_is("refunded"), "the flaky refund")
        [refund] = refunded["refunds"]
        assert (refund["status"], refund["attempts"]) == ("succeeded", TRIES)
        assert refund["charge_id"] == refunded["payment"]["charge_id"]
        assert refunded["payment"]["refunded_cents"] == refunded["payment"]["amount_cents"]

        # A refund that always fails is left refund_failed, for an operator.
        stuck = await until(lambda: provider_ledger(shop, ids["pm_card_refund_fails"]),
                            payment_is("refund_failed"), "the failing refund to give up")
        assert (stuck["payment"]["attempts"], stuck["payment"]["refunded_cents"]) == (TRIES, 0)
        assert [(r["status"], r["attempts"]) for r in stuck["refunds"]] == [
            ("processing", TRIES)]

        # Exactly one successful charge for each order charged, none for the others.
        for method, order_id in ids.items():
            ledger = await provider_ledger(shop, order_id)
            charged = method in ("pm_card_flaky", "pm_card_refund_flaky", "pm_card_refund_fails")
            assert len(succeeded_charges(ledger)) == int(charged), (method, ledger)

        # The two payments that gave up are dead-lettered with their reason, once each.
        letters = await until(lambda: dead_letters(shop), lambda found: len(found) >= 2,
                              "two dead letters")
        assert sorted(letter["key"] for letter in letters) == sorted(
            [ids["pm_card_timeout"], ids["pm_card_refund_fails"]])
        errors = {letter["key"]: letter["error"] for letter in letters}
        assert errors[ids["pm_card_timeout"]].startswith(
            f"charge of order {ids['pm_card_timeout']} gave up after {TRIES} tries: timeout")
        assert errors[ids["pm_card_refund_fails"]].startswith(
            f"refund of order {ids['pm_card_refund_fails']} gave up after {TRIES} tries: error")
        assert all(letter["source_topic"] == "payments" and letter["stage"] == "handle"
                   for letter in letters)

        # The stock of every order but the confirmed one is back.
        stock = await until(lambda: shop.stock(SKU), lambda s: s["available"] == STOCK - 1,
                            "the stock to come back")
        assert (stock["reserved"], stock["sold"]) == (0, 1)

        # Only admins see the provider's ledger.
        status, body = await shop.call(
            "GET", f"/api/admin/payments/{ids['pm_card_flaky']}/provider",
            headers=customer("dana"))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await shop.call("GET", "/api/admin/payments/no-such-order/provider",
                                       headers=ADMIN)
        assert (status, body["error"]["code"]) == (404, "not_found")
