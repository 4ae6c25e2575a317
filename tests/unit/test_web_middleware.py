"""web/middleware.py: every response names the worker that answered it (X-Served-By)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from web.errors import error_middleware
from web.middleware import SERVED_BY, served_by

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
