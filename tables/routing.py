"""Keyed reads answered by the worker that owns the key: Faust's router, made dependable.

Faust's ``table_route`` forwards a request for a key to the worker that owns the key's
partition. Its router as shipped needs the producer to already know the changelog topic
(a worker that has not written to the table fails), forwards neither the body nor the
answer's headers, and fails with an error page when the owner is unreachable (killed, not yet
noticed by the group). This router loads the topic's metadata first, forwards the body and the
headers that matter, marks a forwarded request so it is never forwarded twice, and answers
503 with ``Retry-After`` while the owner is unknown or unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from aiohttp import web as aioweb
from faust.app.router import Router
from faust.exceptions import NotReady, SameNode
from faust.types import K
from faust.types.web import Request, Response, Web
from yarl import URL

from web.errors import ApiError
from web.middleware import (
    CLIENT_ADDRESS,
    REQUEST_ID_HEADER,
    forwarding_headers,
    is_forwarded,
    request_id,
)

__all__ = ["ShopRouter", "Unavailable"]


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


class ShopRouter(Router):
    """Faust's router, with metadata loaded first and complete, loop-free forwarding."""

    async def route_req(self, table_name: str, key: K, web: Web, request: Request) -> Response:
        return await self._route_req(await self._key_owner(table_name, key), web, request)

    async def on_owner(self, table_name: str, key: K, web: Web, request: Request,
                       local: Callable[[], Awaitable[Response]]) -> Response:
        """Answer ``request`` on the worker that owns ``key``: here with ``local()``, or there."""
        try:
            return await self.route_req(table_name, key, web, request)
        except SameNode:
            return await local()

    async def owner_url(self, table_name: str, key: K) -> URL | None:
        """Return the URL of the worker that owns ``key``, or None if it is this one."""
        url = await self._key_owner(table_name, key)
        if self._urlident(url) == self._urlident(self.app.conf.canonical_url):
            return None
        return url

    async def _key_owner(self, table_name: str, key: K) -> URL:
        """Return the URL of the worker that owns ``key`` (metadata loaded first), or 503."""
        topic = self._get_table_topic(self._get_table(table_name))
        try:
            await cast(Any, self.app.producer)._ensure_producer().partitions_for(topic)
            return self.key_store(table_name, key)
        except (KeyError, NotReady):
            raise Unavailable(f"the owner of this {table_name} key is being reassigned; "
                              "retry in a second") from None

    async def _route_req(self, dest_url: URL, web: Web, request: Request) -> Response:
        host, port = self._urlident(dest_url)
        if (host, port) == self._urlident(self.app.conf.canonical_url):
            raise SameNode()
        incoming = cast(aioweb.Request, request)
        if is_forwarded(incoming):
            # Another worker thought we own the key (ownership is moving): answer here
            # rather than forward again.
            raise SameNode()
        headers = {k: v for k, v in incoming.headers.items() if k.lower() not in _SKIP_REQUEST}
        headers.update(forwarding_headers(str(self.app.conf.canonical_url),
                                          cast(Any, self.app).shop_settings.jwt_secret))
        headers[CLIENT_ADDRESS] = str(incoming.remote or "?")
        headers[REQUEST_ID_HEADER] = request_id(incoming)
        body = await incoming.read()
        url = incoming.url.with_host(host).with_port(port)
        try:
            async with self.app.http_client.request(
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
