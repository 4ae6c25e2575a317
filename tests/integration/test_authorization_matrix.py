"""Who may call what: every /api operation of the OpenAPI document, called by five callers.

One worker; a product (admin); customers A and B (real registered accounts) each with an
order; then the MATRIX below is played row by row, in order, as anonymous, A, B, support and
admin. Outcomes: ``allow`` (any status but 401/403, and no 5xx), ``ok`` (a 2xx), ``deny401``,
``deny403`` and ``hidden404`` (a resource that is someone else's answers 404, as if absent).
The test fails if the matrix misses an operation of ``/api/openapi.json``: a new endpoint
must be added here. Answers are checked for the fields the document says they have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import ADMIN, Shop, bearer

pytestmark = pytest.mark.integration

CALLERS = ("anonymous", "A", "B", "support", "admin")
SKU = "AUTHZ-1"
PASSWORD = "authz password 1"
SESSION = "authz-session-1"

Body = dict[str, Any] | Callable[[], Awaitable[dict[str, Any]]] | None


@dataclass(frozen=True)
class Row:
    """One operation, the values of its path parameters, and each caller's expected outcome."""

    method: str
    path: str
    expect: tuple[str, str, str, str, str]  # anonymous, A, B, support, admin
    body: Body = None
    values: dict[str, str] = field(default_factory=dict)  # parameter -> name in `ids`


ANYONE = ("allow",) * 5
SIGNED_IN = ("deny401", "allow", "allow", "allow", "allow")
ADMIN_ONLY = ("deny401", "deny403", "deny403", "deny403", "allow")
OWNED_BY_A = ("deny401", "ok", "hidden404", "hidden404", "ok")
OWNED_BY_B = ("deny401", "hidden404", "ok", "hidden404", "ok")
TICKET_OF_A = ("deny401", "ok", "hidden404", "ok", "ok")
STAFF_ONLY = ("deny401", "deny403", "deny403", "ok", "ok")


def matrix(refresh_body: Callable[[], Awaitable[dict[str, Any]]]) -> list[Row]:
    """Return the rows, in the order they are played (mutations after the reads they spoil)."""
    order_a = {"order_id": "order_a"}
    order_b = {"order_id": "order_b"}
    ticket_a = {"ticket_id": "ticket_a"}
    return [
        Row("GET", "/api/openapi.json", ANYONE),
        Row("GET", "/api/products", ANYONE),
        Row("GET", "/api/products/{sku}", ANYONE),
        Row("GET", "/api/inventory/{sku}", ADMIN_ONLY),
        Row("GET", "/api/orders", SIGNED_IN),
        Row("GET", "/api/orders/{order_id}", OWNED_BY_A, values=order_a),
        Row("GET", "/api/orders/{order_id}", OWNED_BY_B, values=order_b),
        Row("GET", "/api/payments/{order_id}", OWNED_BY_A, values=order_a),
        Row("GET", "/api/payments/{order_id}", OWNED_BY_B, values=order_b),
        Row("GET", "/api/admin/payments/{order_id}/provider", ADMIN_ONLY, values=order_a),
        Row("GET", "/api/users/{user_id}", OWNED_BY_A, values={"user_id": "user_a"}),
        Row("GET", "/api/users/{user_id}", OWNED_BY_B, values={"user_id": "user_b"}),
        Row("GET", "/api/users/me", SIGNED_IN),
        Row("PATCH", "/api/users/me", SIGNED_IN, body={"name": "Renamed"}),
        Row("POST", "/api/users", ANYONE,
            body={"email": "dup@example.com", "password": PASSWORD, "name": "Dup"}),
        Row("POST", "/api/auth/login", ANYONE,
            body={"email": "a@example.com", "password": PASSWORD}),
        Row("POST", "/api/auth/refresh", ANYONE, body=refresh_body),
        Row("POST", "/api/auth/logout", ANYONE, body=refresh_body),
        Row("POST", "/api/events", ANYONE,
            body={"session_id": SESSION, "events": [{"type": "page_view", "path": "/"}]}),
        Row("GET", "/api/analytics/sessions/{session_id}", ADMIN_ONLY),
        Row("GET", "/api/analytics/summary", ADMIN_ONLY),
        Row("GET", "/api/analytics/products/top", ADMIN_ONLY),
        Row("GET", "/api/analytics/tables/{name}", ADMIN_ONLY,
            values={"name": "analytics_table"}),
        Row("GET", "/api/analytics/stream", ADMIN_ONLY),  # 406 without Accept: SSE
        Row("GET", "/api/admin/tasks", ADMIN_ONLY),
        Row("GET", "/api/admin/dead-letters", ADMIN_ONLY),
        Row("GET", "/api/admin/logs", ADMIN_ONLY),
        Row("GET", "/api/admin/trace/{trace_id}", ADMIN_ONLY, values={"trace_id": "order_a"}),
        Row("GET", "/api/admin/alerts", ADMIN_ONLY),
        Row("POST", "/api/admin/logs/test", ADMIN_ONLY,
            body={"level": "INFO", "message": "authorization matrix"}),
        Row("GET", "/api/admin/reports/daily", ADMIN_ONLY),
        Row("GET", "/api/reports/popular", ANYONE),
        Row("GET", "/api/recommendations/{user_id}", OWNED_BY_A, values={"user_id": "user_a"}),
        Row("GET", "/api/products/{sku}/similar", ANYONE),
        Row("POST", "/api/products", ADMIN_ONLY,
            body={"sku": "AUTHZ-2", "name": "Second", "category": "books",
                  "price_cents": 500}),
        Row("PATCH", "/api/products/{sku}", ADMIN_ONLY, body={"name": "Renamed product"}),
        Row("POST", "/api/inventory/{sku}/restock", ADMIN_ONLY, body={"quantity": 5}),
        Row("POST", "/api/orders", ("deny401", "ok", "ok", "deny403", "ok"),
            body={"items": [{"sku": SKU, "quantity": 1}], "payment_method": "pm_card_ok"}),
        # A cancels A's spare order; nobody but B and admin may touch B's.
        Row("POST", "/api/orders/{order_id}/cancel",
            ("deny401", "ok", "hidden404", "deny403", "allow"), values={"order_id": "spare_a"}),
        Row("POST", "/api/orders/{order_id}/cancel",
            ("deny401", "hidden404", "allow", "deny403", "allow"), values=order_b),
        Row("POST", "/api/orders/{order_id}/ship", ADMIN_ONLY, values=order_a),
        Row("POST", "/api/orders/{order_id}/deliver", ADMIN_ONLY, values=order_a),
        Row("GET", "/api/promotions", ANYONE),
        Row("GET", "/api/promotions/{code}", ANYONE),
        Row("POST", "/api/promotions", ADMIN_ONLY,
            body={"code": "AUTHZ-NEW", "kind": "fixed", "value": 100}),
        Row("PATCH", "/api/promotions/{code}", ADMIN_ONLY, body={"value": 15}),
        Row("DELETE", "/api/promotions/{code}", ADMIN_ONLY, values={"code": "doomed_code"}),
        # support: A's ticket; B never sees it; support staff assign and resolve, A reopens.
        Row("GET", "/api/support/tickets", SIGNED_IN),
        Row("POST", "/api/support/tickets", ("deny401", "ok", "ok", "deny403", "ok"),
            body={"subject": "Matrix", "body": "Opened by the matrix."}),
        Row("GET", "/api/support/tickets/{ticket_id}", TICKET_OF_A, values=ticket_a),
        Row("GET", "/api/support/sla", STAFF_ONLY),
        Row("GET", "/api/support/stream", ("deny401", "deny403", "deny403", "allow", "allow")),
        # notifications: each caller's own; only A may mark A's (others: 404, as absent).
        Row("GET", "/api/notifications", SIGNED_IN),
        Row("GET", "/api/notifications/stream", SIGNED_IN),  # 406 without Accept: SSE
        Row("GET", "/api/notifications/preferences", SIGNED_IN),
        Row("PUT", "/api/notifications/preferences", SIGNED_IN,
            body={"marketing": True, "digest": True}),
        Row("POST", "/api/notifications/{notification_id}/read",
            ("deny401", "ok", "hidden404", "hidden404", "hidden404"),
            values={"notification_id": "notification_a"}),
        Row("POST", "/api/support/tickets/{ticket_id}/comments", TICKET_OF_A,
            body={"body": "A comment."}, values=ticket_a),
        Row("POST", "/api/support/tickets/{ticket_id}/assign",
            ("deny401", "deny403", "hidden404", "ok", "ok"), body={"assignee": "me"},
            values=ticket_a),
        Row("POST", "/api/support/tickets/{ticket_id}/resolve",
            ("deny401", "deny403", "hidden404", "ok", "allow"), body={"resolution": "Done."},
            values=ticket_a),
        Row("POST", "/api/support/tickets/{ticket_id}/reopen",
            ("deny401", "ok", "hidden404", "allow", "allow"), values=ticket_a),
        Row("POST", "/api/users/{user_id}/deactivate", ADMIN_ONLY,
            values={"user_id": "user_c"}),
    ]


async def call(http: aiohttp.ClientSession, worker: Worker, method: str, path: str,
               body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Return (status, JSON body); retry while the key's owner is being assigned (503)."""
    for _ in range(30):
        async with http.request(method, worker.url + path, json=body,
                                headers=headers) as answer:
            status, data = answer.status, await answer.json()
        if status != 503:
            return status, data
        await asyncio.sleep(0.2)
    return status, data


async def until(probe: Callable[[], Awaitable[tuple[int, Any]]], ok: Callable[[int, Any], bool],
                within: float = 30.0) -> Any:
    """Call ``probe`` until ``ok(status, body)``; return the body."""
    deadline = time.monotonic() + within
    while True:
        status, body = await probe()
        if ok(status, body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {status} {body}")
        await asyncio.sleep(0.2)


def check(outcome: str, status: int, body: Any) -> bool:
    """Return True if (status, body) is ``outcome``."""
    if status >= 500:
        return False
    if outcome == "allow":
        return status not in (401, 403)
    if outcome == "ok":
        return 200 <= status < 300
    expected = {"deny401": (401, "unauthorized"), "deny403": (403, "forbidden"),
                "hidden404": (404, "not_found")}[outcome]
    return (status, (body or {}).get("error", {}).get("code")) == expected


def required_fields(openapi: dict[str, Any], method: str, path: str, status: int) -> set[str]:
    """Return the fields the document says a ``status`` answer of ``method path`` has.

    (Read from the served document, not web.openapi: importing the views in this process
    would change the unit tests' app, see tests/unit/test_web_openapi.py.)
    """
    answer = openapi["paths"][path][method.lower()]["responses"].get(str(status))
    if answer is None:
        return set()
    schema = answer["content"]["application/json"]["schema"]
    ref = schema.get("$ref", "")
    if ref:
        schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return set(schema.get("required", ()))


async def test_every_endpoint_allows_and_denies_the_right_callers(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1", SHOP_PASSWORD_HASH_COST="light")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        status, openapi = await call(http, worker, "GET", "/api/openapi.json")
        assert status == 200, openapi
        documented = {(method.upper(), path) for path, item in openapi["paths"].items()
                      for method in item}

        # Users A, B and C (C is deactivated at the end), and their ids.
        ids: dict[str, str] = {"sku": SKU, "session_id": SESSION, "code": "AUTHZ10",
                               "doomed_code": "DOOMED",
                               "analytics_table": "analytics-windows"}
        for name in ("a", "b", "c"):
            status, user = await call(http, worker, "POST", "/api/users", {
                "email": f"{name}@example.com", "password": PASSWORD, "name": name.upper()})
            assert status == 201, user
            ids[f"user_{name}"] = user["id"]
        for name in ("a", "b", "c"):  # the e-mail index may take a moment to allow logins
            credentials = {"email": f"{name}@example.com", "password": PASSWORD}
            await until(lambda body=credentials: call(http, worker, "POST", "/api/auth/login",
                                                      body),
                        lambda status, _: status == 200)
        headers: dict[str, dict[str, str]] = {
            "anonymous": {},
            "A": bearer(ids["user_a"], "customer"),
            "B": bearer(ids["user_b"], "customer"),
            "support": bearer("support-1", "support"),
            "admin": ADMIN,
        }

        # A's welcome notification (for marking it read).
        welcome = await until(lambda: call(http, worker, "GET", "/api/notifications",
                                           headers=headers["A"]),
                              lambda status, body: status == 200 and body["total"] >= 1)
        ids["notification_a"] = welcome["items"][-1]["id"]

        # Two promotion codes (one to delete).
        for code in ("AUTHZ10", "DOOMED"):
            status, created = await call(http, worker, "POST", "/api/promotions",
                                         {"code": code, "kind": "percent", "value": 10},
                                         ADMIN)
            assert status == 201, created

        # A support ticket of A's.
        status, ticket = await call(http, worker, "POST", "/api/support/tickets",
                                    {"subject": "Matrix", "body": "A's ticket."},
                                    headers["A"])
        assert status == 201, ticket
        ids["ticket_a"] = ticket["id"]
        await until(lambda: call(http, worker, "GET", f"/api/support/tickets/{ticket['id']}",
                                 headers=headers["A"]), lambda status, _: status == 200)

        # A product, and orders: A's (read, shipped), A's spare (cancelled), B's.
        await shop.add_product(SKU, 100)
        await shop.wait_for_catalog(1)
        for key, user in (("order_a", "user_a"), ("spare_a", "user_a"), ("order_b", "user_b")):
            status, placed = await shop.place(ids[user], [(SKU, 1)])
            assert status == 201, placed
            ids[key] = placed["id"]
            await shop.settled(ids[user], placed["id"])
        for key, owner in (("order_a", "A"), ("order_b", "B")):
            url = f"/api/payments/{ids[key]}"
            await until(lambda url=url, owner=owner: call(http, worker, "GET", url,
                                                          headers=headers[owner]),
                        lambda status, _: status == 200)

        async def refresh_body() -> dict[str, Any]:
            _, tokens = await call(http, worker, "POST", "/api/auth/login",
                                   {"email": "a@example.com", "password": PASSWORD})
            return {"refresh_token": tokens["refresh_token"]}

        rows = matrix(refresh_body)
        tabled = {(row.method, row.path) for row in rows}
        assert documented - tabled == set(), "operations missing from the authorization matrix"
        assert tabled - documented == set(), "matrix rows for operations not in the document"

        failures: list[str] = []
        for row in rows:
            path = row.path
            for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
                path = path.replace(f"{{{name}}}", ids[row.values.get(name, name)])
            seen = []
            for caller, outcome in zip(CALLERS, row.expect, strict=True):
                body = await row.body() if callable(row.body) else row.body
                status, answer = await call(http, worker, row.method, path, body,
                                            headers[caller])
                if not check(outcome, status, answer):
                    failures.append(f"{row.method} {path} as {caller}: expected {outcome}, "
                                    f"got {status} {answer}")
                seen.append(f"{caller}={status}")
                missing = required_fields(openapi, row.method, row.path, status) - set(
                    answer if isinstance(answer, dict) else ())
                if missing:
                    failures.append(f"{row.method} {path} as {caller}: {status} answer lacks "
                                    f"the documented fields {sorted(missing)}")
            print(f"{row.method:6} {row.path:40} {' '.join(seen)}")
        assert not failures, "\n".join(failures)

        # A bad token is a 401 wherever a caller is needed, never a pass as anonymous.
        forged = {"Authorization": "Bearer not-a-token"}
        for path, item in openapi["paths"].items():
            for method, op in item.items():
                if op["x-roles"] is None:
                    continue
                concrete = path
                for name, key in (("order_id", "order_a"), ("user_id", "user_a"),
                                  ("sku", "sku"), ("session_id", "session_id"),
                                  ("code", "code"), ("ticket_id", "ticket_a"),
                                  ("notification_id", "notification_a"),
                                  ("name", "analytics_table"), ("trace_id", "order_a")):
                    concrete = concrete.replace(f"{{{name}}}", ids[key])
                status, answer = await call(http, worker, method.upper(), concrete, {},
                                            forged)
                assert status == 401, (method, concrete, status, answer)

        # A may not list B's orders by naming B; an admin may.
        status, listing = await call(http, worker, "GET", f"/api/orders?user_id={ids['user_b']}",
                                     headers=headers["A"])
        assert status == 200
        assert ids["order_b"] not in {o["id"] for o in listing["items"]}
        assert {o["user_id"] for o in listing["items"]} <= {ids["user_a"]}
        status, listing = await call(http, worker, "GET", f"/api/orders?user_id={ids['user_b']}",
                                     headers=ADMIN)
        assert status == 200
        assert ids["order_b"] in {o["id"] for o in listing["items"]}
