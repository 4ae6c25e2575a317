"""web/bodies.py: a JSON body becomes a pydantic model, or a 400/422 that says what to fix."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from web.bodies import UNSTORABLE, read_body
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


@pytest.mark.parametrize("data", [
    b'{"name": "x", "lines": [{"sku": "a", "quantity": ' + b"9" * 5000 + b"}]}",
    b'{"name": "x", "lines": [{"sku": "a", "quantity": 1e999}]}',
    b'{"name": "x", "lines": [{"sku": "a", "quantity": -1e999}]}',
], ids=["an integer past the digit limit", "a float past a double", "its negative"])
async def test_a_number_nothing_can_store_is_a_400(client: TestClient, data: bytes) -> None:
    response = await client.post("/cart", data=data,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31mred", "tab\x0bvertical", "del\x7f"])
async def test_text_with_a_control_character_is_a_422_naming_the_field(
        client: TestClient, text: str) -> None:
    response = await client.post("/cart", json={"name": "ok",
                                                "lines": [{"sku": text, "quantity": 1}]})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["details"] == [{"field": "lines.0.sku",
                                 "problem": "contains a control character"}]


async def test_free_text_keeps_tabs_and_newlines(client: TestClient) -> None:
    body = {"name": "line one\n\tline two\r\n", "lines": [{"sku": "a", "quantity": 1}]}
    response = await client.post("/cart", json=body)
    assert response.status == 200


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_unstorable_is_exactly_the_c0_controls_but_whitespace_and_del(text: str) -> None:
    allowed = {"\t", "\n", "\r"}
    bad = any((ord(c) < 0x20 and c not in allowed) or c == "\x7f" for c in text)
    assert bool(UNSTORABLE.search(text)) == bad
