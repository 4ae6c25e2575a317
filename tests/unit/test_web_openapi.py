"""The OpenAPI document (web/openapi.py): complete, well formed, built from the views' models.

No server is started here: test_web_views.py owns the served aiohttp application (it can
serve on one event loop only), so the document is read by calling the route's handler.

Named test_web_* on purpose: ``app.discover()`` imports tables/catalog.py, whose GlobalTable
is not a ShopTable, and test_shop_table.py's "every table is a ShopTable" check only passes
when it runs before any module discovers the views.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import BaseModel

from app import app
from web.openapi import ENDPOINTS, Endpoint, ErrorOut, document

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app.discover()  # import every view module, as `faust worker` does
    return document()


def api_routes() -> set[tuple[str, str]]:
    """Return (METHOD, path) of every /api route of the Faust web app (HEAD aside)."""
    app.discover()
    return {(route.method, route.resource.canonical)
            for route in app.web.web_app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/api")
            and route.method not in ("HEAD", "OPTIONS")}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/components/schemas/"), ref
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in doc["paths"].items()
            for method, op in item.items()]


def test_every_api_route_has_a_declaration_and_every_declaration_a_route() -> None:
    routes = api_routes()
    declared = set(ENDPOINTS)
    assert routes - declared == set(), "routes without an endpoint(...) declaration"
    assert declared - routes == set(), "declarations of routes that do not exist"


def test_the_document_is_openapi_3_1_with_the_bearer_scheme(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    json.dumps(doc)  # serialisable


def test_every_path_has_operations_and_declares_its_path_parameters(
    doc: dict[str, Any],
) -> None:
    assert set(doc["paths"]) == {path for _, path in api_routes()}
    operation_ids = set()
    for path, item in doc["paths"].items():
        assert path.startswith("/api/")
        assert item and set(item) <= HTTP_METHODS, path
        for method, op in item.items():
            assert op["summary"], (method, path)
            assert op["operationId"] not in operation_ids
            operation_ids.add(op["operationId"])
            in_path = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert all(p["required"] for p in op["parameters"] if p["in"] == "path")
            assert any(code.startswith("2") for code in op["responses"]), (method, path)


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
        assert name in doc["components"]["schemas"], name


def model_fields(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_request_body_is_the_model_the_view_validates_with(doc: dict[str, Any]) -> None:
    with_body = [ep for ep in ENDPOINTS.values() if ep.body is not None]
    assert len(with_body) >= 10
    for ep in with_body:
        check_body(doc, ep)


def check_body(doc: dict[str, Any], ep: Endpoint) -> None:
    assert ep.body is not None
    op = doc["paths"][ep.path][ep.method.lower()]
    schema = resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == model_fields(ep.body), ep.key
    assert set(schema.get("required", ())) == {
        name for name, field in ep.body.model_fields.items() if field.is_required()}, ep.key
    assert op["requestBody"]["required"] is True
    assert {"400", "422"} <= set(op["responses"])


def test_the_views_declare_the_bodies_they_read(doc: dict[str, Any]) -> None:
    from web.admin import TestRecordIn
    from web.analytics import TrackingBatch
    from web.auth import LoginIn, RefreshIn
    from web.notifications import PreferencesIn
    from web.orders import OrderIn
    from web.products import ProductIn, ProductPatch, RestockIn
    from web.promotions import PromotionIn, PromotionPatch
    from web.support_models import AssignIn, CommentIn, ResolveIn, TicketIn
    from web.users import ProfileIn, RegisterIn

    expected = {
        ("POST", "/api/products"): ProductIn, ("PATCH", "/api/products/{sku}"): ProductPatch,
        ("POST", "/api/inventory/{sku}/restock"): RestockIn, ("POST", "/api/orders"): OrderIn,
        ("POST", "/api/users"): RegisterIn, ("PATCH", "/api/users/me"): ProfileIn,
        ("POST", "/api/auth/login"): LoginIn, ("POST", "/api/auth/refresh"): RefreshIn,
        ("POST", "/api/auth/logout"): RefreshIn, ("POST", "/api/events"): TrackingBatch,
        ("POST", "/api/promotions"): PromotionIn,
        ("PATCH", "/api/promotions/{code}"): PromotionPatch,
        ("POST", "/api/admin/logs/test"): TestRecordIn,
        ("POST", "/api/support/tickets"): TicketIn,
        ("POST", "/api/support/tickets/{ticket_id}/comments"): CommentIn,
        ("POST", "/api/support/tickets/{ticket_id}/assign"): AssignIn,
        ("POST", "/api/support/tickets/{ticket_id}/resolve"): ResolveIn,
        ("PUT", "/api/notifications/preferences"): PreferencesIn,
    }
    assert {key: ep.body for key, ep in ENDPOINTS.items() if ep.body} == expected
    orders_in = resolve(doc, doc["paths"]["/api/orders"]["post"]["requestBody"]["content"]
                        ["application/json"]["schema"])
    line = resolve(doc, orders_in["properties"]["items"]["items"])
    assert set(line["properties"]) == {"sku", "quantity"}


def test_query_parameters_come_from_the_query_models(doc: dict[str, Any]) -> None:
    listing = doc["paths"]["/api/products"]["get"]["parameters"]
    assert {p["name"] for p in listing if p["in"] == "query"} == {
        "category", "q", "page", "per_page"}
    per_page = next(p for p in listing if p["name"] == "per_page")
    assert per_page["schema"]["maximum"] == 100 and per_page["required"] is False
    waits = doc["paths"]["/api/orders/{order_id}"]["get"]["parameters"]
    assert [p["name"] for p in waits if p["in"] == "query"] == ["wait"]


def test_errors_have_the_one_error_shape(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    detail = resolve(doc, error["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "details"}
    for method, path, op in operations(doc):
        for code, answer in op["responses"].items():
            if code.startswith("4") or code.startswith("5"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
    ErrorOut.model_validate({"error": {"code": "not_found", "message": "x", "details": None}})


def test_security_names_the_roles_each_operation_needs(doc: dict[str, Any]) -> None:
    def roles(method: str, path: str) -> Any:
        op = doc["paths"][path][method]
        return op["x-roles"], op["security"]

    assert roles("get", "/api/products") == (None, [])
    assert roles("post", "/api/products") == (["admin"], [{"bearer": ["admin"]}])
    assert roles("get", "/api/orders/{order_id}") == ([], [{"bearer": []}])
    assert roles("post", "/api/orders") == (["customer", "admin"],
                                            [{"bearer": ["customer", "admin"]}])
    assert roles("get", "/api/openapi.json") == (None, [])
    for method, path, op in operations(doc):
        if op["x-roles"] is not None:
            assert "401" in op["responses"], (method, path)
            assert ("403" in op["responses"]) == bool(op["x-roles"]), (method, path)


def test_response_models_match_what_the_views_build() -> None:
    from models.users import public_user
    from web.auth import TokensOut, token_answer
    from web.products import ProductOut, public_product
    from web.users import UserOut

    row = {"id": "u1", "email": "a@b.c", "name": "A", "roles": ["customer"],
           "created_at": "2024-01-01T00:00:00+00:00", "active": True, "password_hash": "x"}
    UserOut.model_validate(public_user(row))
    TokensOut.model_validate(token_answer("a", "r"))
    product = ProductOut.model_validate(public_product({"sku": "SKU-1", "name": "n"}))
    assert set(ProductOut.model_fields) == set(public_product({}))
    assert product.sku == "SKU-1"


async def test_get_openapi_json_serves_the_document() -> None:
    app.discover()
    route = next(r for r in app.web.web_app.router.routes()
                 if r.method == "GET" and r.resource is not None
                 and r.resource.canonical == "/api/openapi.json")
    request = make_mocked_request("GET", "/api/openapi.json", app=app.web.web_app)
    response: Any = await route.handler(request)
    assert response.status == 200
    assert response.content_type == "application/json"
    served = json.loads(response.body)
    assert served == json.loads(json.dumps(document()))


def test_other_success_statuses_are_documented_with_the_response_model() -> None:
    from web.orders import OrderOut

    ep = Endpoint("GET", "/api/things/{thing_id}", "A thing.", response=OrderOut, roles=(),
                  also={202: "not settled yet: the thing as it is now"})
    responses = document([ep])["paths"]["/api/things/{thing_id}"]["get"]["responses"]
    assert list(responses)[:2] == ["200", "202"]
    assert responses["202"]["description"] == "not settled yet: the thing as it is now"
    assert responses["202"]["content"] == responses["200"]["content"]


def test_also_takes_only_other_success_statuses() -> None:
    from web.openapi import endpoint

    for bad in ({404: "x"}, {200: "x"}):
        with pytest.raises(ValueError, match="also"):
            endpoint("GET", "/api/nowhere", also=bad)


def test_a_waited_on_order_still_open_is_documented_as_202(doc: dict[str, Any]) -> None:
    assert "202" in doc["paths"]["/api/orders/{order_id}"]["get"]["responses"]


def test_every_declared_path_is_the_route_of_its_view() -> None:
    """@endpoint registers the route too: each declared path is served by the view declared."""
    app.discover()
    assert len(ENDPOINTS) > 40
    routes = {(route.method, route.resource.canonical)
              for route in app.web.web_app.router.routes() if route.resource is not None}
    for (method, path), _ in ENDPOINTS.items():
        assert (method, path) in routes or ("*", path) in routes, f"{method} {path} not served"


def test_a_view_class_is_served_at_one_path() -> None:
    from web.openapi import endpoint
    from web.views import ShopView

    class Elsewhere(ShopView):
        view_path = "/api/elsewhere"  # as if registered there already

    with pytest.raises(ValueError, match="one view class per path"):
        endpoint("GET", "/api/other-place")(Elsewhere)
    assert ("GET", "/api/other-place") not in ENDPOINTS
