"""Users and authentication on real brokers and two workers.

Registration is decided by one writer per e-mail key, so the same address registered at once
through both workers is given to exactly one request. Login answers tokens that
``web.tokens.verify_access_token`` accepts; refresh tokens rotate and logout revokes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from agents.users import admin_user_id
from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import wait_for_json
from web.tokens import verify_access_token

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789abcdef"
SETTINGS = {"SHOP_JWT_SECRET": SECRET, "SHOP_PASSWORD_HASH_COST": "light"}
ADMIN_EMAIL, ADMIN_PASSWORD = "boss@shop.example", "admin password 1"


async def call(http: aiohttp.ClientSession, worker: Worker, method: str, path: str,
               body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Return (status, JSON body) of one request to ``worker``."""
    async with http.request(method, worker.url + path, json=body, headers=headers) as answer:
        return answer.status, await answer.json()


async def two_workers(workers: WorkerFactory, **extra: str) -> tuple[Worker, Worker]:
    """Start two workers and wait until both are ready after their last rebalance."""
    a, b = workers.start("a", **SETTINGS, **extra), workers.start("b", **SETTINGS, **extra)
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    async with aiohttp.ClientSession() as http:
        for worker in (a, b):
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=30)
    return a, b


async def login(http: aiohttp.ClientSession, worker: Worker, email: str,
                password: str) -> tuple[int, Any]:
    """Log in; return (status, body)."""
    return await call(http, worker, "POST", "/api/auth/login",
                      {"email": email, "password": password})


async def test_registration_is_unique_and_login_gives_valid_tokens(
    workers: WorkerFactory,
) -> None:
    a, b = await two_workers(workers)
    async with aiohttp.ClientSession() as http:
        status, user = await call(http, a, "POST", "/api/users", {
            "email": "Ada@Example.com", "password": "correct horse", "name": "Ada"})
        assert status == 201, user
        assert user["email"] == "ada@example.com"
        assert (user["name"], user["roles"], user["active"]) == ("Ada", ["customer"], True)
        assert set(user) == {"id", "email", "name", "roles", "created_at", "active"}

        for worker in (a, b):
            status, body = await call(http, worker, "POST", "/api/users", {
                "email": "ADA@example.COM", "password": "another pass", "name": "Eve"})
            assert (status, body["error"]["code"]) == (409, "conflict"), body

        # Ten at once, through both workers, all one address in different cases.
        emails = [f"{'GRACE' if n % 2 else 'grace'}@example.com" for n in range(10)]
        answers = await asyncio.gather(*(
            call(http, (a, b)[n % 2], "POST", "/api/users",
                 {"email": email, "password": f"password {n}", "name": f"Grace {n}"})
            for n, email in enumerate(emails)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201] + [409] * 9, answers

        # Login through either worker gives tokens for the user.
        for worker in (a, b):
            status, tokens = await login(http, worker, "ada@EXAMPLE.com", "correct horse")
            assert status == 200, tokens
            assert tokens["token_type"] == "bearer"
            assert tokens["expires_in"] == 900
            assert verify_access_token(tokens["access_token"], secret=SECRET) == (
                user["id"], frozenset({"customer"}))
            assert tokens["refresh_token"].startswith(user["id"] + ".")

        wrong = await login(http, b, "ada@example.com", "wrong horse")
        unknown = await login(http, a, "nobody@example.com", "correct horse")
        assert wrong[0] == unknown[0] == 401
        assert wrong[1]["error"]["message"] == unknown[1]["error"]["message"]

        status, body = await call(http, a, "POST", "/api/users", {
            "email": "not an address", "password": "short", "name": ""})
        assert status == 422
        assert {d["field"] for d in body["error"]["details"]} == {"email", "password", "name"}


async def test_profiles_sessions_deactivation_and_the_first_admin(
    workers: WorkerFactory,
) -> None:
    a, b = await two_workers(workers, SHOP_ADMIN_EMAIL=ADMIN_EMAIL,
                             SHOP_ADMIN_PASSWORD=ADMIN_PASSWORD)
    async with aiohttp.ClientSession() as http:
        # The first admin was registered once, by whichever worker claimed first, and can
        # log in through either worker as soon as both say /ready (a deploy script's order).
        status, admin_tokens = await login(http, a, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert status == 200, admin_tokens
        assert (await login(http, b, ADMIN_EMAIL, ADMIN_PASSWORD))[0] == 200
        admin_id, admin_roles = verify_access_token(admin_tokens["access_token"], secret=SECRET)
        assert (admin_id, admin_roles) == (admin_user_id(ADMIN_EMAIL),
                                           frozenset({"admin", "customer"}))
        status, body = await call(http, b, "POST", "/api/users", {
            "email": ADMIN_EMAIL, "password": "i am the admin", "name": "Mallory"})
        assert status == 409, body

        status, user = await call(http, b, "POST", "/api/users", {
            "email": "linus@example.com", "password": "first password", "name": "Linus"})
        assert status == 201, user
        for _ in range(50):
            status, first = await login(http, a, "linus@example.com", "first password")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, first
        me = {"Authorization": f"Bearer {first['access_token']}"}
        as_admin = {"Authorization": f"Bearer {admin_tokens['access_token']}"}

        # Profile reads and changes, as the bearer of the access token.
        for worker in (a, b):
            status, body = await call(http, worker, "GET", "/api/users/me", headers=me)
            assert (status, body) == (200, user)
        status, body = await call(http, a, "PATCH", "/api/users/me",
                                  {"name": "Linus T", "password": "second password"}, me)
        assert (status, body["name"]) == (200, "Linus T"), body
        status, body = await call(http, b, "GET", f"/api/users/{user['id']}", headers=me)
        assert (status, body["name"]) == (200, "Linus T")
        status, _ = await call(http, a, "GET", f"/api/users/{admin_id}", headers=me)
        assert status == 404
        status, body = await call(http, a, "GET", f"/api/users/{user['id']}",
                                  headers=as_admin)
        assert (status, body["id"]) == (200, user["id"])

        # The new password works (once the e-mail index has it); the old one does not.
        for _ in range(50):
            status, tokens = await login(http, b, "linus@example.com", "second password")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, tokens
        assert (await login(http, a, "linus@example.com", "first password"))[0] == 401

        # Refresh rotates: the new token works, the old one no longer does.
        status, fresh = await call(http, a, "POST", "/api/auth/refresh",
                                   {"refresh_token": tokens["refresh_token"]})
        assert status == 200, fresh
        assert verify_access_token(fresh["access_token"], secret=SECRET)[0] == user["id"]
        status, body = await call(http, b, "POST", "/api/auth/refresh",
                                  {"refresh_token": tokens["refresh_token"]})
        assert status == 401, body

        # Logout revokes.
        status, _ = await call(http, b, "POST", "/api/auth/logout",
                               {"refresh_token": fresh["refresh_token"]})
        assert status == 200
        status, _ = await call(http, a, "POST", "/api/auth/refresh",
                               {"refresh_token": fresh["refresh_token"]})
        assert status == 401

        # Deactivation (admin only): no more logins, sessions end.
        _, live = await login(http, a, "linus@example.com", "second password")
        status, _ = await call(http, a, "POST", f"/api/users/{user['id']}/deactivate",
                               headers=me)
        assert status == 403
        status, body = await call(http, b, "POST", f"/api/users/{user['id']}/deactivate",
                                  headers=as_admin)
        assert (status, body["active"]) == (200, False), body
        status, _ = await call(http, a, "POST", "/api/auth/refresh",
                               {"refresh_token": live["refresh_token"]})
        assert status == 401
        for _ in range(50):
            status, body = await login(http, b, "linus@example.com", "second password")
            if status != 200:
                break
            await asyncio.sleep(0.1)
        assert status == 403, body

        # Access tokens issued before the deactivation stop working on every worker.
        still = {"Authorization": f"Bearer {live['access_token']}"}
        for worker in (a, b):
            for _ in range(50):
                status, body = await call(http, worker, "GET", "/api/users/me", headers=still)
                if status == 401:
                    break
                await asyncio.sleep(0.1)
            assert (status, body["error"]["message"]) == (
                401, "the access token was revoked; sign in again"), body

        # Guessing passwords: after five failures (of the account, or of this address, which
        # already failed above) the next attempts are refused for a while.
        answers = [(await login(http, a, "guess@example.com", f"guess number {n}"))[0]
                   for n in range(7)]
        first_refusal = answers.index(429)
        assert 1 <= first_refusal <= 6, answers
        assert set(answers[:first_refusal]) == {401}, answers
        assert set(answers[first_refusal:]) == {429}, answers
