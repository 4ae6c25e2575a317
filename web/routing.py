"""Keyed reads answered by the worker that owns the key: the request forwarded there.

Faust's ``table_route`` forwards a request for a key to the worker that owns the key's
partition, but forwards neither the body nor the answer's headers, and fails with an error
page when the owner is unreachable (killed, not yet noticed by the group). Here the owner
comes from the router (``runtime/routing.py``: who owns a key), and the forwarding sends the
body and the headers that matter, marks a forwarded request so it is never forwarded twice,
and answers 503 with ``Retry-After`` while the owner is unknown or unreachable, or when a
forwarded request reaches a worker that takes another for the owner (ownership is moving: a
row missing here would be a false 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, cast

import aiohttp
from aiohttp import web as aioweb
from faust.types import K
from faust.types.web import Request, Response
from yarl import URL

from app import app
from runtime.routing import OwnerUnknown, ShopRouter
from web.errors import ApiError
from web.middleware import (
    CLIENT_ADDRESS,
    REQUEST_ID_HEADER,
    forwarding_headers,
    is_forwarded,
    request_id,
)

__all__ = ["Unavailable", "forward", "on_owner", "owner_url", "route_to_owner"]


#: Request headers not forwarded (hop-by-hop, or recomputed by the client).
_SKIP_REQUEST = {"host", "connection", "keep-alive", "transfer-encoding", "content-length",
                 "upgrade", "te", "trailer", "proxy-authorization", "proxy-authenticate"}

#: Response headers passed back to the caller.
_KEEP_RESPONSE = ("Content-Type", "Retry-After", "X-Served-By", "Location", "Cache-Control")

FORWARD_TIMEOUT_S = 10.0


class Unavailable(ApiError):
    """The key's owner is not known or not reachable right now; retry shortly."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def _router() -> ShopRouter:
    return cast(ShopRouter, app.router)


async def owner_url(table_name: str, key: K) -> URL | None:
    """Return the URL of the worker that owns ``key``, or None if it is this one; 503
    (:class:`Unavailable`) while the owner is not known."""
    try:
        return await _router().owner_url(table_name, key)
    except OwnerUnknown as exc:
        raise Unavailable(str(exc)) from None


async def on_owner(table_name: str, key: K, request: Request,
                   local: Callable[[], Awaitable[Response]]) -> Response:
    """Answer ``request`` on the worker that owns ``key``: here with ``local()``, or there."""
    owner = await owner_url(table_name, key)
    if owner is None:
        return await local()
    if is_forwarded(request, app.settings.jwt_secret):
        # Another worker took us for the owner, we take a third: ownership is moving, and
        # a row not here is not an answer (a false 404).
        raise Unavailable(f"the owner of this {table_name} key is being reassigned; "
                          "retry in a second")
    return await forward(owner, request)


async def forward(owner: URL, request: Request) -> Response:
    """Send ``request`` to the worker at ``owner`` and return its answer (503 if it does not
    answer)."""
    incoming = cast(aioweb.Request, request)
    host, port = owner.host, owner.port
    headers = {k: v for k, v in incoming.headers.items() if k.lower() not in _SKIP_REQUEST}
    headers.update(forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret))
    headers[CLIENT_ADDRESS] = str(incoming.remote or "?")
    headers[REQUEST_ID_HEADER] = request_id(incoming)
    body = await incoming.read()
    url = incoming.url.with_host(cast(str, host)).with_port(port)
    try:
        async with app.http_client.request(
            incoming.method, url, headers=headers, data=body or None,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
        ) as answer:
            payload = await answer.read()
            kept = {k: answer.headers[k] for k in _KEEP_RESPONSE if k in answer.headers}
            return cast(Response, aioweb.Response(
                body=payload, status=answer.status, headers=kept))
    except (aiohttp.ClientError, TimeoutError):
        raise Unavailable(
            f"the worker that owns this key ({host}:{port}) does not answer; "
            "retry in a second"
        ) from None


def route_to_owner(table: Any, *, query_param: str | None = None,
                   match_info: str | None = None, exact_key: str | None = None,
                   ) -> Callable[[Callable[..., Awaitable[Response]]],
                                 Callable[..., Awaitable[Response]]]:
    """Decorate a view method to answer on the worker that owns the request's key.

    What Faust's ``app.table_route`` does (the key from ``match_info``, ``query_param`` or
    ``exact_key``), through :func:`on_owner`: a key owned here calls the method directly,
    where Faust's decorator raises and catches ``SameNode`` on every such request.
    """
    if query_param is None and match_info is None and exact_key is None:
        raise TypeError("route_to_owner needs one of query_param, match_info or exact_key")

    def decorator(method: Callable[..., Awaitable[Response]]
                  ) -> Callable[..., Awaitable[Response]]:
        @wraps(method)
        async def routed(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            if exact_key is not None:
                key = exact_key
            elif match_info is not None:
                key = request.match_info[match_info]
            else:
                key = request.query[cast(str, query_param)]
            return await on_owner(table.name, key, request,
                                  lambda: method(view, request, *args, **kwargs))

        return routed

    return decorator
