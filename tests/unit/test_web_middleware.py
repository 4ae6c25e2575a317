"""web/middleware.py: which worker answered, request ids, rate limits and CORS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from web.errors import error_middleware
from web.middleware import (
    REQUEST_ID,
    SERVED_BY,
    cors,
    forwarding_headers,
    install_request_id_logging,
    rate_limits,
    request_id,
    request_ids,
    served_by,
)

WORKER = "http://worker-1.internal:6066"


async def plain(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def forwarded(request: web.Request) -> web.Response:
    return web.json_response({}, headers={SERVED_BY: "http://worker-2.internal:6066"})


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    return response


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[served_by(WORKER), error_middleware])
    app.router.add_get("/plain", plain)
    app.router.add_get("/forwarded", forwarded)
    app.router.add_get("/streamed", streamed)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_response_names_this_worker(client: TestClient) -> None:
    response = await client.get("/plain")
    assert response.headers[SERVED_BY] == WORKER


async def test_an_error_response_names_this_worker_too(client: TestClient) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert response.headers[SERVED_BY] == WORKER


async def test_the_worker_that_really_answered_is_kept(client: TestClient) -> None:
    response = await client.get("/forwarded")
    assert response.headers[SERVED_BY] == "http://worker-2.internal:6066"


async def test_a_response_already_sent_is_left_alone(client: TestClient) -> None:
    response = await client.get("/streamed")
    assert response.status == 200
    assert SERVED_BY not in response.headers
    assert await response.read() == b"data: 1\n\n"


# -- request ids, rate limits, CORS ---------------------------------------------------------


async def who_am_i(request: web.Request) -> web.Response:
    return web.json_response({"request_id": request_id(request), "logged": REQUEST_ID.get()})


@pytest.fixture
async def gateway() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[
        request_ids, cors(frozenset({"https://shop.example.com"})),
        rate_limits(2.0, 3.0, lambda request: request.headers.get("X-Caller", "anonymous")),
        error_middleware])
    app.router.add_get("/api/who", who_am_i)
    app.router.add_post("/api/who", who_am_i)
    app.router.add_get("/health", who_am_i)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_request_id_is_taken_from_the_caller_or_made_and_echoed(
    gateway: TestClient,
) -> None:
    given = await gateway.get("/api/who", headers={"X-Request-Id": "req-42"})
    assert given.headers["X-Request-Id"] == "req-42"
    assert await given.json() == {"request_id": "req-42", "logged": "req-42"}
    made = await gateway.get("/api/who", headers={"X-Request-Id": "bad id with spaces"})
    body = await made.json()
    assert made.headers["X-Request-Id"] == body["request_id"] != "bad id with spaces"
    assert len(body["request_id"]) == 32


async def test_each_caller_gets_its_burst_then_a_429_with_retry_after(
    gateway: TestClient,
) -> None:
    statuses = [(await gateway.get("/api/who", headers={"X-Caller": "a"})).status
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await gateway.get("/api/who", headers={"X-Caller": "a"})
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await limited.json())["error"]["code"] == "too_many_requests"
    assert (await gateway.get("/api/who", headers={"X-Caller": "b"})).status == 200
    health = [(await gateway.get("/health", headers={"X-Caller": "a"})).status
              for _ in range(5)]
    assert health == [200] * 5  # operations endpoints are not limited


async def test_cors_answers_preflights_for_allowed_origins_only(gateway: TestClient) -> None:
    preflight = await gateway.options("/api/who", headers={
        "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = await gateway.get("/api/who", headers={"Origin": "https://evil.example.com",
                                                   "X-Caller": "c"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_log_records_carry_the_request_id() -> None:
    install_request_id_logging()
    token = REQUEST_ID.set("req-7")
    try:
        record = logging.getLogger("test").makeRecord("test", logging.INFO, __file__, 1,
                                                      "hello", (), None)
    finally:
        REQUEST_ID.reset(token)
    assert record.request_id == "req-7"


async def test_only_a_proven_forward_skips_the_rate_limit(gateway: TestClient) -> None:
    from app import settings

    claimed = {"X-Caller": "d", "X-Shop-Forwarded-By": "http://worker-2:6066"}
    statuses = [(await gateway.get("/api/who", headers=claimed)).status for _ in range(4)]
    assert statuses[-1] == 429, "a client's own claim to be a worker changes nothing"
    proven = {"X-Caller": "d",
              **forwarding_headers("http://worker-2:6066", settings.jwt_secret)}
    statuses = [(await gateway.get("/api/who", headers=proven)).status for _ in range(6)]
    assert statuses == [200] * 6
