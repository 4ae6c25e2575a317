"""The OpenAPI 3.1 document of the HTTP API, built from declarations next to the views.

Each view declares its operations with :func:`endpoint` (a class decorator, or a call on the
view class where the view is made by a factory), which also registers the view at its path
on the app's web server (``app.page``): the path is written once, and the route and the
document cannot disagree::

    @endpoint("GET", "/api/products", query=ListingQuery, response=ProductList)
    @endpoint("POST", "/api/products", body=ProductIn, roles=("admin",), status=202)
    class ProductsView(ShopView):
        ...

``body`` and ``query`` are the pydantic models the view validates with (``read_body`` /
``read_query``), so the document cannot drift from what the server accepts. ``roles`` says
who may call: ``None`` anyone, ``()`` any signed-in user, ``("admin",)`` a user with one of
those roles (the same names the view passes to ``web.identity.require``). The summary is the
first line of the handler's docstring, else of the view's. ``GET /api/openapi.json`` serves
:func:`document`; tests check every ``/api`` route of the web app has a declaration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faust.web import Request, Response
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app import app
from web.views import ShopView

__all__ = [
    "ENDPOINTS",
    "WRITE_ACCEPTED",
    "Endpoint",
    "ErrorOut",
    "document",
    "endpoint",
]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
SCHEMAS = "#/components/schemas/"
SECURITY_SCHEME = "bearer"
METHODS = ("get", "put", "post", "patch", "delete")
#: What the extra error statuses a view declares mean.
ERRORS = {401: "wrong credentials or an invalid token", 403: "not allowed (e.g. deactivated)",
          404: "no such resource", 409: "conflict with the resource's state",
          503: "the owner worker is being reassigned or has not applied a Shop-Position yet; "
               "retry after Retry-After"}

#: The 202 of a write (``also=WRITE_ACCEPTED``): its table did not apply it within
#: SHOP_WRITE_WAIT_S (web/positions.py).
WRITE_ACCEPTED = {202: "accepted, but not applied within SHOP_WRITE_WAIT_S: the resource as "
                       "the write will make it; send the Shop-Position header back to read it"}
#: The request header every operation honours, and the headers of a write's 202.
POSITION_PARAMETER = {
    "name": "Shop-Position", "in": "header", "required": False,
    "description": "a token from a write's 202 (topic:partition:offset:signature, up to 4 "
                   "separated by commas): the request is answered once the owners have "
                   "applied it (503 with Retry-After if they cannot in time; 400 "
                   "bad_position if this shop did not issue it)",
    "schema": {"type": "string", "maxLength": 1024}}
ACCEPTED_HEADERS = {
    "Location": {"description": "where to read the resource", "schema": {"type": "string"}},
    "Shop-Position": {"description": "send it back as the Shop-Position request header",
                      "schema": {"type": "string"}},
}

V = TypeVar("V", bound=type)


# -- The one error shape (web/errors.py) --------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message for people and optional details."""

    code: str = Field(examples=["not_found"])
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


# -- The registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One operation of the API: what it takes, who may call it and what it answers."""

    method: str
    path: str
    summary: str
    description: str = ""
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    roles: tuple[str, ...] | None = None
    errors: tuple[int, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    view: str = ""
    also: dict[int, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """Return (METHOD, path)."""
        return self.method, self.path

    @property
    def path_parameters(self) -> list[str]:
        """Return the names of the path's ``{parameters}``."""
        return re.findall(r"{(\w+)}", self.path)

    @property
    def operation_id(self) -> str:
        """Return a stable operation id made of the method and the path."""
        words = re.sub(r"[^A-Za-z0-9]+", "_", self.path.removeprefix("/api/")).strip("_")
        return f"{self.method.lower()}_{words}"


#: Every declared operation by (METHOD, path), in declaration order.
ENDPOINTS: dict[tuple[str, str], Endpoint] = {}


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def endpoint(method: str, path: str, *, body: type[BaseModel] | None = None,
             query: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
             status: int = 200, roles: tuple[str, ...] | None = None,
             errors: Iterable[int] = (), headers: dict[str, str] | None = None,
             summary: str | None = None,
             also: Mapping[int, str] | None = None) -> Callable[[V], V]:
    """Return a class decorator that declares ``method path`` of the view it decorates.

    ``also`` names other success statuses the view answers with the same ``response`` model,
    and what each means (e.g. ``{202: "not settled yet: the order as it is now"}``).
    """
    method = method.upper()
    more = dict(also or {})
    if any(not 200 <= code < 300 or code == status for code in more):
        raise ValueError(f"{method} {path}: 'also' takes other 2xx statuses, not {sorted(more)}")

    def declare(view: V) -> V:
        handler = getattr(view, method.lower(), None)
        own_doc = handler.__doc__ if handler is not None and handler.__doc__ else None
        view_doc = view.__doc__ if view.__doc__ not in (None, ShopView.__doc__) else None
        served = view.__dict__.get("view_path")
        if served is not None and served != path:
            raise ValueError(f"{view.__qualname__} is served at {served}, not {path}: "
                             "one view class per path")
        found = ENDPOINTS.get((method, path))
        if found is not None and found.view != view.__qualname__:
            raise ValueError(f"{method} {path} is declared twice ({found.view}, "
                             f"{view.__qualname__})")
        ENDPOINTS[(method, path)] = Endpoint(
            method=method, path=path,
            summary=summary or _first_line(own_doc) or _first_line(view_doc) or path,
            description=(own_doc or view_doc or "").strip(),
            body=body, query=query, response=response, status=status, roles=roles,
            errors=tuple(errors), headers=dict(headers or {}), view=view.__qualname__,
            also=more)
        if served is None:
            app.page(path)(view)  # the view's route, once for all its methods
        return view

    return declare


# -- The document ----------------------------------------------------------------------------


def _models(endpoints: Iterable[Endpoint]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorOut, "serialization"): None}
    for ep in endpoints:
        for model in (ep.body, ep.query):
            if model is not None:
                seen[(model, "validation")] = None
        if ep.response is not None:
            seen[(ep.response, "serialization")] = None
    return list(seen)


def _who(roles: tuple[str, ...] | None) -> str:
    if roles is None:
        return "anyone"
    if not roles:
        return "any signed-in user"
    return "a signed-in user with the role " + " or ".join(roles)


def _operation(ep: Endpoint, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    error = {"$ref": refs[(ErrorOut, "serialization")]["$ref"]}
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ep.path_parameters]
    if ep.query is not None:
        schema = ep.query.model_json_schema(mode="validation")
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "in": "query",
                                     "required": name in required, "schema": prop}
            if prop.get("description"):
                param["description"] = prop["description"]
            parameters.append(param)
    for name, text in ep.headers.items():
        parameters.append({"name": name, "in": "header", "required": False,
                           "description": text, "schema": {"type": "string"}})
    parameters.append(POSITION_PARAMETER)

    success: dict[str, Any] = {"description": ep.response.__doc__.strip()
                               if ep.response is not None and ep.response.__doc__ else "OK"}
    success["content"] = {"application/json": {"schema": (
        refs[(ep.response, "serialization")] if ep.response is not None
        else {"type": "object"})}}
    responses: dict[str, Any] = {str(ep.status): success}
    for code, meaning in sorted(ep.also.items()):
        responses[str(code)] = {**success, "description": meaning}
        if code == 202 and ep.method != "GET":
            responses[str(code)]["headers"] = ACCEPTED_HEADERS
    statuses: dict[int, str] = {400: "a Shop-Position header this shop did not issue",
                                503: ERRORS[503]}
    if ep.body is not None:
        statuses[400] = "the body is not JSON, or a Shop-Position header this shop did not issue"
        statuses[422] = "the body's fields are invalid (details name each field)"
    if ep.query is not None:
        statuses[422] = "the query or body is invalid (details name each field)"
    if ep.roles is not None:
        statuses[401] = "no or an invalid bearer token"
    if ep.roles:
        statuses[403] = f"the caller lacks the role {' or '.join(ep.roles)}"
    if ep.path_parameters:
        statuses[404] = "no such resource (or not the caller's)"
    for code in ep.errors:
        statuses.setdefault(code, ERRORS.get(code, "error"))
    for code in sorted(statuses):
        responses[str(code)] = {"description": statuses[code],
                                "content": {"application/json": {"schema": error}}}
    responses["4XX"] = {"description": "any other client error, in the one error shape",
                        "content": {"application/json": {"schema": error}}}

    operation: dict[str, Any] = {
        "operationId": ep.operation_id,
        "summary": ep.summary,
        "tags": [ep.path.removeprefix("/api/").split("/")[0]],
        "parameters": parameters,
        "responses": responses,
        "x-roles": None if ep.roles is None else list(ep.roles),
    }
    description = ep.description
    who = f"Who: {_who(ep.roles)}."
    operation["description"] = f"{description}\n\n{who}" if description else who
    if ep.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(ep.body, "validation")]}}}
    if ep.roles is not None:
        operation["security"] = [{SECURITY_SCHEME: list(ep.roles)}]
    else:
        operation["security"] = []
    return operation


def document(endpoints: Iterable[Endpoint] | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``endpoints`` (default: every declared one)."""
    chosen = sorted(ENDPOINTS.values() if endpoints is None else endpoints,
                    key=lambda ep: (ep.path, METHODS.index(ep.method.lower())))
    refs, defs = models_json_schema(_models(chosen), ref_template=SCHEMAS + "{model}")
    paths: dict[str, dict[str, Any]] = {}
    for ep in chosen:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "ShopStream API", "version": API_VERSION,
                 "description": "Errors always have the shape of the ErrorOut schema. "
                                "Operations with a bearer security requirement list the "
                                "roles they need as its scopes (and in x-roles)."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /api/auth/login; its roles claim "
                               "lists the caller's roles."}},
        },
    }


@endpoint("GET", "/api/openapi.json")
class OpenApiView(ShopView):
    """The OpenAPI 3.1 document of this API."""

    async def get(self, request: Request) -> Response:
        return self.json(document())
