"""web/bodies.py: a JSON body becomes a pydantic model, or a 400/422 that says what to fix."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from web.bodies import read_body
from web.errors import error_middleware


class Line(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class Cart(BaseModel):
    name: str
    lines: list[Line] = Field(min_length=1)


async def echo_cart(request: web.Request) -> web.Response:
    cart = await read_body(request, Cart)
    return web.json_response(cart.model_dump())


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/cart", echo_cart)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_valid_body_is_returned_as_the_model(client: TestClient) -> None:
    body = {"name": "mine", "lines": [{"sku": "a", "quantity": 2}]}
    response = await client.post("/cart", json=body)
    assert response.status == 200
    assert await response.json() == body


@pytest.mark.parametrize("data", [b"not json", b"", b'{"name": ', b"\xff\xfe\xfd"])
async def test_a_body_that_is_not_json_is_a_400(client: TestClient, data: bytes) -> None:
    response = await client.post("/cart", data=data,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"].startswith("the body is not valid JSON")


async def test_invalid_fields_are_a_422_listing_each_field(client: TestClient) -> None:
    response = await client.post("/cart", json={"lines": [{"sku": "", "quantity": 0}]})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "invalid"
    assert error["message"] == "the body is not a valid Cart"
    assert {d["field"] for d in error["details"]} == {"name", "lines.0.sku", "lines.0.quantity"}
    assert all(d["problem"] for d in error["details"])


async def test_json_that_is_not_an_object_is_a_422(client: TestClient) -> None:
    response = await client.post("/cart", json=[1, 2])
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid"


async def test_deeply_nested_json_is_a_client_error(client: TestClient) -> None:
    logging.getLogger("web.errors").disabled = True  # the 500's traceback is the expected noise
    try:
        response = await client.post("/cart", data=b"[" * 100_000,
                                     headers={"Content-Type": "application/json"})
    finally:
        logging.getLogger("web.errors").disabled = False
    assert response.status in (400, 413, 422)
