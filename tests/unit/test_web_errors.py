"""web/errors.py: every error a client sees has the one JSON shape, 5xx only for our bugs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from web.errors import ApiError, BadRequest, NotFound, error_body, error_middleware


class Conflict(ApiError):
    status = 409
    code = "conflict"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def conflict(request: web.Request) -> web.Response:
    raise Conflict("sku-1 is taken", details={"sku": "sku-1"}, headers={"Retry-After": "2"})


async def missing(request: web.Request) -> web.Response:
    raise NotFound("no order 42")


async def recoded(request: web.Request) -> web.Response:
    raise BadRequest("cart is empty", code="empty_cart", details=[{"field": "items"}])


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("password=hunter2 leaked from the database driver")


async def busy(request: web.Request) -> web.Response:
    raise web.HTTPServiceUnavailable(headers={"Retry-After": "5", "X-Internal": "node-7"})


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/ok", ok)
    app.router.add_post("/conflict", conflict)
    app.router.add_get("/missing", missing)
    app.router.add_get("/recoded", recoded)
    app.router.add_get("/crash", crash)
    app.router.add_get("/busy", busy)
    app.router.add_get("/moved", moved)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_good_response_passes_through(client: TestClient) -> None:
    response = await client.get("/ok")
    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_an_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {
        "error": {"code": "not_found", "message": "no route for /nowhere", "details": None},
    }


async def test_a_wrong_method_is_a_json_405_that_keeps_allow(client: TestClient) -> None:
    response = await client.delete("/ok")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    body = await response.json()
    assert body["error"]["code"] == "method_not_allowed"


async def test_an_api_error_gives_its_status_code_details_and_headers(client: TestClient) -> None:
    response = await client.post("/conflict")
    assert response.status == 409
    assert response.headers["Retry-After"] == "2"
    assert await response.json() == {
        "error": {"code": "conflict", "message": "sku-1 is taken", "details": {"sku": "sku-1"}},
    }


async def test_the_builtin_api_errors(client: TestClient) -> None:
    response = await client.get("/missing")
    assert response.status == 404
    assert (await response.json())["error"] == {
        "code": "not_found", "message": "no order 42", "details": None,
    }
    response = await client.get("/recoded")
    assert response.status == 400
    assert (await response.json())["error"] == {
        "code": "empty_cart", "message": "cart is empty", "details": [{"field": "items"}],
    }


async def test_an_unexpected_exception_is_a_500_that_leaks_nothing(
    client: TestClient, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="web.errors"):
        response = await client.get("/crash")
    assert response.status == 500
    text = await response.text()
    assert "hunter2" not in text and "RuntimeError" not in text
    body = await response.json()
    assert body["error"]["code"] == "internal"
    assert body["error"]["details"] is None
    # ... while the operator gets the whole story in the log.
    [record] = [r for r in caplog.records if r.name == "web.errors"]
    assert "GET /crash" in record.getMessage()
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_an_http_error_keeps_only_the_headers_a_client_needs(client: TestClient) -> None:
    response = await client.get("/busy")
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert "X-Internal" not in response.headers
    assert (await response.json())["error"]["code"] == "unavailable"


async def test_a_redirect_is_not_an_error(client: TestClient) -> None:
    response = await client.get("/moved", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/ok"


def test_error_body_derives_the_code_from_the_status() -> None:
    assert error_body(422, "bad")["error"]["code"] == "invalid"
    assert error_body(429, "slow down")["error"]["code"] == "too_many_requests"
    assert error_body(418, "teapot")["error"]["code"] == "error"
    assert error_body(400, "x", code="custom", details=[1]) == {
        "error": {"code": "custom", "message": "x", "details": [1]},
    }
