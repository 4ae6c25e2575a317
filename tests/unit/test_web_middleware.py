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
from web.middleware import (
    gateway as shop_gateway,
)

WORKER = "http://worker-1.internal:6066"
#: The workers' shared secret in these tests (a forward is proven with it).
SECRET = "test-secret-shared-by-the-workers"


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
        rate_limits(2.0, 3.0, lambda request: request.headers.get("X-Caller", "anonymous"),
                    SECRET),
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
    claimed = {"X-Caller": "d", "X-Shop-Forwarded-By": "http://worker-2:6066"}
    statuses = [(await gateway.get("/api/who", headers=claimed)).status for _ in range(4)]
    assert statuses[-1] == 429, "a client's own claim to be a worker changes nothing"
    proven = {"X-Caller": "d",
              **forwarding_headers("http://worker-2:6066", SECRET)}
    statuses = [(await gateway.get("/api/who", headers=proven)).status for _ in range(6)]
    assert statuses == [200] * 6


# -- the fused gateway: the same behaviours in one middleware -------------------------------


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/api/who")


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def fused() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[shop_gateway(
        WORKER, frozenset({"https://shop.example.com"}), 2.0, 3.0,
        lambda request: request.headers.get("X-Caller", "anonymous"), SECRET)])
    app.router.add_get("/api/who", who_am_i)
    app.router.add_get("/api/forwarded", forwarded)
    app.router.add_get("/api/streamed", streamed)
    app.router.add_get("/api/redirect", redirect)
    app.router.add_get("/api/broken", broken)
    app.router.add_get("/health", who_am_i)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_gateway_echoes_or_makes_request_ids_and_names_the_worker(
    fused: TestClient,
) -> None:
    given = await fused.get("/api/who", headers={"X-Request-Id": "req-42"})
    assert given.headers["X-Request-Id"] == "req-42"
    assert given.headers[SERVED_BY] == WORKER
    assert await given.json() == {"request_id": "req-42", "logged": "req-42"}
    made = await fused.get("/api/who", headers={"X-Request-Id": "bad id with spaces"})
    body = await made.json()
    assert made.headers["X-Request-Id"] == body["request_id"] == body["logged"]
    assert len(body["request_id"]) == 32 and int(body["request_id"], 16) >= 0
    other = await fused.get("/api/who")
    assert (await other.json())["request_id"] != body["request_id"]
    assert REQUEST_ID.get() == ""
    kept = await fused.get("/api/forwarded", headers={"X-Caller": "forwarded"})
    assert kept.headers[SERVED_BY] == "http://worker-2.internal:6066"
    streamed_answer = await fused.get("/api/streamed", headers={"X-Caller": "streamed"})
    assert SERVED_BY not in streamed_answer.headers
    assert await streamed_answer.read() == b"data: 1\n\n"


async def test_the_gateway_answers_every_error_in_one_shape_with_its_headers(
    fused: TestClient,
) -> None:
    unknown = await fused.get("/nowhere", headers={"X-Request-Id": "req-1"})
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "not_found"
    assert unknown.headers[SERVED_BY] == WORKER and unknown.headers["X-Request-Id"] == "req-1"
    wrong = await fused.delete("/api/who", headers={"X-Caller": "wrong"})
    assert wrong.status == 405 and "GET" in wrong.headers["Allow"]
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"
    bug = await fused.get("/api/broken", headers={"X-Caller": "bug"})
    assert bug.status == 500 and (await bug.json())["error"]["code"] == "internal"
    moved = await fused.get("/api/redirect", headers={"X-Caller": "moved"},
                            allow_redirects=False)
    assert moved.status == 302


async def test_the_gateway_limits_each_caller_on_api_only(fused: TestClient) -> None:
    statuses = [(await fused.get("/api/who", headers={"X-Caller": "a"})).status
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await fused.get("/api/who", headers={
        "X-Caller": "a", "Origin": "https://shop.example.com"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert (await limited.json())["error"]["code"] == "too_many_requests"
    assert limited.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert limited.headers[SERVED_BY] == WORKER and limited.headers["X-Request-Id"]
    assert (await fused.get("/api/who", headers={"X-Caller": "b"})).status == 200
    health = [(await fused.get("/health", headers={"X-Caller": "a"})).status
              for _ in range(5)]
    assert health == [200] * 5


async def test_the_gateway_answers_cors_preflights_for_allowed_origins_only(
    fused: TestClient,
) -> None:
    preflight = await fused.options("/api/who", headers={
        "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
        "X-Caller": "p"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers[SERVED_BY] == WORKER
    allowed = await fused.get("/api/who", headers={"Origin": "https://shop.example.com",
                                                   "X-Caller": "c"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "X-Request-Id" in allowed.headers["Access-Control-Expose-Headers"]
    other = await fused.get("/api/who", headers={"Origin": "https://evil.example.com",
                                                 "X-Caller": "c"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers


async def test_the_gateway_skips_the_limit_only_for_a_proven_forward(fused: TestClient) -> None:
    claimed = {"X-Caller": "d", "X-Shop-Forwarded-By": "http://worker-2:6066"}
    statuses = [(await fused.get("/api/who", headers=claimed)).status for _ in range(4)]
    assert statuses[-1] == 429
    proven = {"X-Caller": "d",
              **forwarding_headers("http://worker-2:6066", SECRET)}
    statuses = [(await fused.get("/api/who", headers=proven)).status for _ in range(6)]
    assert statuses == [200] * 6


def test_an_http_step_record_has_the_fields_of_one_made_in_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from models.tracing import REQUEST_ID
    from web import middleware

    install_request_id_logging()
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(middleware.http_steps, "handle", records.append)
    monkeypatch.setattr(middleware, "_template", None)
    token = REQUEST_ID.set("a" * 32)
    try:
        middleware.log_http_step("GET", "/api/users/me", 200, time.perf_counter())
        middleware.log_http_step("GET", "/api/orders/1", 404, time.perf_counter())
    finally:
        REQUEST_ID.reset(token)
    full, copied = records
    assert middleware._template is not None, "the second record is made from the first"
    moments = {"created", "msecs", "relativeCreated", "args", "trace"}
    assert set(copied.__dict__) == set(full.__dict__)
    assert {k: v for k, v in copied.__dict__.items() if k not in moments} == \
        {k: v for k, v in full.__dict__.items() if k not in moments}
    assert copied.getMessage().startswith("GET /api/orders/1 404 in ")
    assert copied.trace["status"] == 404 and copied.request_id == "a" * 32
    assert copied.funcName == "log_http_step" and copied.filename == "middleware.py"
    assert 0 <= copied.created - full.created < 5
    assert abs((copied.relativeCreated - full.relativeCreated) / 1000
               - (copied.created - full.created)) < 1e-3
    assert copied.msecs == int((copied.created - int(copied.created)) * 1000)
