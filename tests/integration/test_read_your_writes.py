"""Read your writes on real brokers and two workers (docs/guarantees.md, "Read your writes").

The matrix: every write endpoint, written through one worker and at once read (or acted on)
through the same worker and through the other: the write answered 201/200 with the resource
as stored, and the next request sees it, every time, with no sleep and no retry in between;
so does what it causes one hop later (a new user's row, a new password's login, the catalog's
stock level, the customer's list of orders).

The token: a ``Shop-Position`` header is honoured across the two workers (a read waits for
an offset not written yet, and answers once it is), refused when malformed or forged (400 in
the error shape), and bounded when the partition's owner is gone (503 with Retry-After).

One cluster serves the module; the token test kills a worker, so it runs last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.settings import DEV_JWT_SECRET
from models.positions import Written, encode_token
from scripts.devstack import Worker, rabbit_vhost, start_tansu
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import wait_for_json
from tests.integration.notify import SseClient
from tests.integration.shop import ADMIN, bearer

pytestmark = pytest.mark.integration

SETTINGS = {"SHOP_PASSWORD_HASH_COST": "light", "SHOP_WRITE_WAIT_S": "10"}
SUPPORT = bearer("support-1", "support")
PASSWORD = "read your writes"
WRITE_WAIT_S = 10.0


@pytest.fixture(scope="module")
def cluster(rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Worker, Worker]]:
    """Two ready workers on a fresh broker, for the whole module."""
    base: Path = tmp_path_factory.mktemp("read-your-writes")
    broker = start_tansu(log_path=base / "tansu.log")
    try:
        with rabbit_vhost(rabbit_url) as vhost_url:
            factory = WorkerFactory(broker, rabbit_url, base, vhost_url)
            try:
                a, b = factory.start("a", **SETTINGS), factory.start("b", **SETTINGS)
                a.wait_ready(), b.wait_ready()
                asyncio.run(both_ready(a, b))
                yield a, b
            finally:
                factory.stop_all()
    finally:
        broker.stop()


async def both_ready(*workers: Worker) -> None:
    async with aiohttp.ClientSession() as http:
        for worker in workers:
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=60)


class Client:
    """One request at a time, no retries: what a client sees is what the test checks."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def __call__(self, worker: Worker, method: str, path: str,
                       headers: dict[str, str] | None = None, body: Any = None,
                       ) -> tuple[int, Any]:
        async with self.http.request(method, worker.url + path, headers=headers,
                                     json=body) as answer:
            return answer.status, await answer.json()


def expect(answer: tuple[int, Any], status: int) -> Any:
    assert answer[0] == status, answer
    return answer[1]


async def write_then_read(call: Client, w: Worker, r: Worker, tag: str) -> None:
    """Every write endpoint through ``w``, each checked at once through ``r``."""
    # Users: register, sign in, read and change one's profile.
    email = f"ryw-{tag}@example.com"
    user = expect(await call(w, "POST", "/api/users", body={
        "email": email, "password": PASSWORD, "name": "Before"}), 201)
    for reader in (r, w):  # the user's row, one hop after the e-mail's claim
        assert expect(await call(reader, "GET", f"/api/users/{user['id']}", ADMIN),
                      200)["email"] == email
    tokens = expect(await call(r, "POST", "/api/auth/login",
                               body={"email": email, "password": PASSWORD}), 200)
    me = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert expect(await call(r, "GET", "/api/users/me", me), 200)["name"] == "Before"
    assert expect(await call(w, "PATCH", "/api/users/me", me, {"name": "After"}),
                  200)["name"] == "After"
    assert expect(await call(r, "GET", "/api/users/me", me), 200)["name"] == "After"
    # A new password: the login data, one hop after the user's row, take it at once.
    expect(await call(w, "PATCH", "/api/users/me", me, {"password": PASSWORD + "!"}), 200)
    tokens = expect(await call(r, "POST", "/api/auth/login",
                               body={"email": email, "password": PASSWORD + "!"}), 200)
    me = {"Authorization": f"Bearer {tokens['access_token']}"}

    # Products: create (with stock), change, restock.
    sku = f"RYW-{tag.upper()}"
    product = {"sku": sku, "name": "Before", "category": "books", "price_cents": 700,
               "initial_stock": 5}
    created = expect(await call(w, "POST", "/api/products", ADMIN, product), 201)
    assert (created["sku"], created["stock_level"]) == (sku, "low_stock"), created
    seen = expect(await call(r, "GET", f"/api/products/{sku}"), 200)
    assert (seen["name"], seen["stock_level"]) == ("Before", "low_stock"), seen
    assert expect(await call(r, "GET", f"/api/inventory/{sku}", ADMIN), 200)["available"] == 5
    assert expect(await call(w, "PATCH", f"/api/products/{sku}", ADMIN, {"name": "After"}),
                  200)["name"] == "After"
    assert expect(await call(r, "GET", f"/api/products/{sku}"), 200)["name"] == "After"
    restocked = expect(await call(w, "POST", f"/api/inventory/{sku}/restock", ADMIN,
                                  {"quantity": 3}), 200)
    assert restocked["stock"]["available"] == 8, restocked
    assert expect(await call(r, "GET", f"/api/inventory/{sku}", ADMIN), 200)["available"] == 8
    for reader in (r, w):  # the catalog's stock level, one hop after the stock
        assert expect(await call(reader, "GET", f"/api/products/{sku}"),
                      200)["stock_level"] == "in_stock"

    # Orders: place, read, cancel; place, ship, deliver.
    line = {"items": [{"sku": sku, "quantity": 1}], "payment_method": "pm_card_ok"}
    placed = expect(await call(w, "POST", "/api/orders", me, line), 201)
    assert placed["status"] != "" and placed["user_id"] == user["id"], placed
    seen = expect(await call(r, "GET", f"/api/orders/{placed['id']}", me), 200)
    assert seen["id"] == placed["id"], seen
    for reader in (r, w):  # the customer's list of orders, one hop after the order
        listed = expect(await call(reader, "GET", "/api/orders", me), 200)["items"]
        assert placed["id"] in [item["id"] for item in listed], listed
    cancelled = expect(await call(r, "POST", f"/api/orders/{placed['id']}/cancel", me), 200)
    assert cancelled["status"] == "cancelled", cancelled
    placed = expect(await call(w, "POST", "/api/orders", me, line), 201)
    settled = expect(await call(r, "GET", f"/api/orders/{placed['id']}?wait=20", me), 200)
    assert settled["status"] == "confirmed", settled
    assert expect(await call(w, "POST", f"/api/orders/{placed['id']}/ship", ADMIN),
                  200)["status"] == "shipped"
    assert expect(await call(r, "GET", f"/api/orders/{placed['id']}", me),
                  200)["status"] == "shipped"
    assert expect(await call(w, "POST", f"/api/orders/{placed['id']}/deliver", ADMIN),
                  200)["status"] == "delivered"
    assert expect(await call(r, "GET", f"/api/orders/{placed['id']}", me),
                  200)["status"] == "delivered"

    # Support: open, act on it through the other worker, read every change there.
    ticket = expect(await call(w, "POST", "/api/support/tickets", me,
                               {"subject": "Where is it?", "body": "Tell me"}), 201)
    path = f"/api/support/tickets/{ticket['id']}"
    assert expect(await call(r, "POST", path + "/resolve", SUPPORT, {"resolution": "Here"}),
                  200)["status"] == "resolved"
    assert expect(await call(w, "POST", path + "/reopen", me), 200)["status"] == "reopened"
    assert expect(await call(r, "GET", path, me), 200)["status"] == "reopened"
    expect(await call(w, "POST", path + "/comments", me, {"body": "Still waiting"}), 200)
    comments = expect(await call(r, "GET", path, me), 200)["comments"]
    assert [c["body"] for c in comments] == ["Still waiting"], comments
    assert expect(await call(w, "POST", path + "/assign", SUPPORT, {"assignee": "me"}),
                  200)["assignee"] == "support-1"
    assert expect(await call(r, "GET", path, me), 200)["assignee"] == "support-1"

    # Promotions: create, change, delete.
    code = f"RYW{tag.upper()}"
    expect(await call(w, "POST", "/api/promotions", ADMIN,
                      {"code": code, "kind": "percent", "value": 10}), 201)
    assert expect(await call(r, "GET", f"/api/promotions/{code}", ADMIN), 200)["value"] == 10
    assert expect(await call(w, "PATCH", f"/api/promotions/{code}", ADMIN, {"value": 20}),
                  200)["value"] == 20
    assert expect(await call(r, "GET", f"/api/promotions/{code}", ADMIN), 200)["value"] == 20
    expect(await call(w, "DELETE", f"/api/promotions/{code}", ADMIN), 200)
    expect(await call(r, "GET", f"/api/promotions/{code}", ADMIN), 404)

    # Notifications: the welcome (pushed on the stream), marked read; mail preferences.
    async with SseClient(call.http, r.url, me, last_event_id="0") as stream:
        _, welcome, _ = await stream.next(within=30.0)
    assert expect(await call(w, "POST", f"/api/notifications/{welcome['id']}/read", me),
                  200) == {"id": welcome["id"], "read": True}
    page = expect(await call(r, "GET", "/api/notifications", me), 200)
    assert [item["read"] for item in page["items"] if item["id"] == welcome["id"]] == [True]
    prefs = {"marketing": False, "digest": True}
    assert expect(await call(w, "PUT", "/api/notifications/preferences", me, prefs),
                  200) == prefs
    assert expect(await call(r, "GET", "/api/notifications/preferences", me), 200) == prefs

    # Deactivation: the user's access token is refused at once, on either worker.
    assert expect(await call(w, "POST", f"/api/users/{user['id']}/deactivate", ADMIN),
                  200)["active"] is False
    expect(await call(r, "GET", "/api/users/me", me), 401)


async def test_every_write_is_visible_at_once_through_either_worker(
    cluster: tuple[Worker, Worker],
) -> None:
    a, b = cluster
    async with aiohttp.ClientSession() as http:
        call = Client(http)
        for w, r, tag in ((a, a, "aa"), (a, b, "ab"), (b, b, "bb"), (b, a, "ba")):
            await write_then_read(call, w, r, tag)


def token(topic: str, partition: int, offset: int, secret: str = DEV_JWT_SECRET) -> str:
    return encode_token([Written(topic, partition, offset)], secret)


async def test_the_position_token_is_honoured_refused_and_bounded(
    cluster: tuple[Worker, Worker],
) -> None:
    a, b = cluster
    async with aiohttp.ClientSession() as http:
        call = Client(http)

        # Malformed or forged: 400 in the error shape, at once, on any path.
        for bad in ("catalog:0:1", "catalog:0:1:0123456789abcdef", token("catalog", 0, 1, "x"),
                    token("dead-letters", 0, 1)):
            status, body = await call(a, "GET", "/api/products", {"Shop-Position": bad})
            assert status == 400 and body["error"]["code"] == "bad_position", (bad, body)
            assert set(body["error"]) == {"code", "message", "details"}

        # Honoured across the workers: a read through b for the catalog's next offset waits
        # until a product written through a lands there, then answers with it.
        applied = expect(await call(b, "GET", "/positions"), 200)["applied"]
        following = applied.get("catalog:0", -1) + 1
        read = asyncio.ensure_future(call(b, "GET", "/api/products/RYW-NEXT",
                                          {"Shop-Position": token("catalog", 0, following)}))
        expect(await call(b, "GET", "/health"), 200)  # the read is there; RYW-NEXT is not
        assert not read.done()
        expect(await call(a, "POST", "/api/products", ADMIN, {
            "sku": "RYW-NEXT", "name": "Next", "category": "books", "price_cents": 1}), 201)
        assert expect(await read, 200)["name"] == "Next"

        # A partitioned topic's token is answered by the partition's owner, whichever worker
        # it reaches; an offset not written yet is a bounded 503.
        # Orders on a's partitions (this test may run on a cluster of its own, with no orders
        # yet): each round of writes places orders with random ids, half of them a's.
        for round_ in range(6):
            owned = {worker.url: expect(await call(worker, "GET", "/positions"), 200)["applied"]
                     for worker in (a, b)}
            orders_a = sorted(k for k in owned[a.url] if k.startswith("orders:"))
            if orders_a:
                break
            await write_then_read(call, a, a, f"tok{round_}")
        assert orders_a, owned
        partition = int(orders_a[0].split(":")[1])
        offset = owned[a.url][orders_a[0]]
        for worker in (a, b):
            header = {"Shop-Position": token("orders", partition, offset)}
            expect(await call(worker, "GET", "/api/products", header), 200)
        started = time.monotonic()
        async with http.get(b.url + "/api/products", headers={
                "Shop-Position": token("orders", partition, offset + 10**6)}) as answer:
            assert answer.status == 503 and answer.headers["Retry-After"], answer.status
        assert time.monotonic() - started < WRITE_WAIT_S + 5

        # The owner gone: a bounded 503 with Retry-After, never a hang.
        a.kill()
        started = time.monotonic()
        async with http.get(b.url + "/api/products", headers={
                "Shop-Position": token("orders", partition, offset)}) as answer:
            assert answer.status == 503 and answer.headers["Retry-After"], answer.status
            assert (await answer.json())["error"]["code"] == "unavailable"
        assert time.monotonic() - started < WRITE_WAIT_S + 5
