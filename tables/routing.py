"""Keyed reads answered by the worker that owns the key: Faust's router, made dependable.

Faust's ``table_route`` forwards a request for a key to the worker that owns the key's
partition. Its router as shipped needs the producer to already know the changelog topic
(a worker that has not written to the table fails), forwards neither the body nor the
answer's headers, and fails with an error page when the owner is unreachable (killed, not yet
noticed by the group). This router loads the topic's metadata first, forwards the body and the
headers that matter, marks a forwarded request so it is never forwarded twice, and answers
503 with ``Retry-After`` while the owner is unknown or unreachable, or when a forwarded request
reaches a worker that takes another for the owner (ownership is moving: a row missing here
would be a false 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, cast

import aiohttp
from aiohttp import web as aioweb
from faust.app.router import Router
from faust.exceptions import NotReady, SameNode
from faust.types import TP, K
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

__all__ = ["ShopRouter", "Unavailable", "route_to_owner"]


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


#: How many keys' partitions each router remembers (the oldest is forgotten first).
PARTITION_CACHE_SIZE = 10_000


class ShopRouter(Router):
    """Faust's router, with metadata loaded first and complete, loop-free forwarding.

    The owner of a key is looked up on every request (ownership moves at rebalances), but
    what cannot change is remembered: each table's changelog topic, this worker's own host
    and port, and each key's partition (a hash of the key over the topic's partitions, whose
    number a topic keeps for its life).
    """

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._topics: dict[str, tuple[str, Any]] = {}
        self._partitions: dict[tuple[str, K], int] = {}
        self._idents: dict[str, tuple[str, int]] = {}
        self._own: tuple[str, int] | None = None

    async def route_req(self, table_name: str, key: K, web: Web, request: Request) -> Response:
        owner = await self._owner_text(table_name, key)
        if owner is None:
            raise SameNode()
        if is_forwarded(request):
            # Another worker took us for the owner, we take a third: ownership is moving.
            raise Unavailable(f"the owner of this {table_name} key is being reassigned; "
                              "retry in a second")
        return await self._route_req(URL(owner), web, request)

    async def on_owner(self, table_name: str, key: K, web: Web, request: Request,
                       local: Callable[[], Awaitable[Response]]) -> Response:
        """Answer ``request`` on the worker that owns ``key``: here with ``local()``, or there."""
        owner = await self._owner_text(table_name, key)
        if owner is None:
            return await local()
        if is_forwarded(request):
            # Another worker took us for the owner, we take a third: ownership is moving, and
            # a row not here is not an answer.
            raise Unavailable(f"the owner of this {table_name} key is being reassigned; "
                              "retry in a second")
        try:
            return await self._route_req(URL(owner), web, request)
        except SameNode:
            return await local()

    async def owner_url(self, table_name: str, key: K) -> URL | None:
        """Return the URL of the worker that owns ``key``, or None if it is this one."""
        owner = await self._owner_text(table_name, key)
        return URL(owner) if owner is not None else None

    def partition_owner(self, topic: str, partition: int) -> URL | None:
        """Return the URL of the worker that owns ``topic[partition]``, None if it is this one.

        Raise :class:`Unavailable` (503) while the owner is not known.
        """
        owner = cast(Any, self._assignor)._external_tps_url.get(TP(topic, partition))
        if owner is None:
            raise Unavailable(f"the owner of {topic}[{partition}] is being reassigned; "
                              "retry in a second")
        return None if self._ident(owner) == self._own_ident() else URL(owner)

    def other_workers(self) -> list[URL]:
        """Return the URLs of the other workers of the group (as of the last rebalance)."""
        assignor = cast(Any, self._assignor)
        urls = {*assignor._tps_url.values(), *assignor._external_tps_url.values()}
        return [URL(url) for url in sorted(urls) if self._ident(url) != self._own_ident()]

    async def _key_owner(self, table_name: str, key: K) -> URL:
        """Return the URL of the worker that owns ``key`` (metadata loaded first), or 503."""
        owner = await self._owner_text(table_name, key)
        return URL(owner) if owner is not None else URL(str(self.app.conf.canonical_url))

    async def _owner_text(self, table_name: str, key: K) -> str | None:
        """Return the URL of the worker that owns ``key`` as text, None if it is this one.

        Raise :class:`Unavailable` (503) while the owner is not known.
        """
        known = self._topics.get(table_name)
        if known is None:
            table = self._get_table(table_name)
            known = self._topics[table_name] = (self._get_table_topic(table),
                                                table.changelog_topic)
        topic, changelog = known
        try:
            partition = self._partitions.get((topic, key))
            if partition is None:
                producer = cast(Any, self.app.producer)._ensure_producer()
                if producer._metadata.partitions_for_topic(topic) is None:
                    await producer.partitions_for(topic)
                partition = self.app.producer.key_partition(
                    topic, changelog.prepare_key(key, None)[0]).partition
                if len(self._partitions) >= PARTITION_CACHE_SIZE:
                    del self._partitions[next(iter(self._partitions))]
                self._partitions[(topic, key)] = partition
            owner: str = cast(Any, self._assignor)._tps_url[TP(topic, partition)]
        except (KeyError, NotReady):
            raise Unavailable(f"the owner of this {table_name} key is being reassigned; "
                              "retry in a second") from None
        return None if self._ident(owner) == self._own_ident() else owner

    def _ident(self, url: str) -> tuple[str, int]:
        ident = self._idents.get(url)
        if ident is None:
            ident = self._idents[url] = self._urlident(URL(url))
        return ident

    def _own_ident(self) -> tuple[str, int]:
        if self._own is None:
            self._own = self._urlident(URL(str(self.app.conf.canonical_url)))
        return self._own

    async def _route_req(self, dest_url: URL, web: Web, request: Request) -> Response:
        host, port = self._urlident(dest_url)
        if (host, port) == self._own_ident():
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


def route_to_owner(app: Any, table: Any, *, query_param: str | None = None,
                   match_info: str | None = None, exact_key: str | None = None,
                   ) -> Callable[[Callable[..., Awaitable[Response]]],
                                 Callable[..., Awaitable[Response]]]:
    """Decorate a view method to answer on the worker that owns the request's key.

    What ``app.table_route`` does (the key from ``match_info``, ``query_param`` or
    ``exact_key``), through :meth:`ShopRouter.on_owner`: a key owned here calls the method
    directly, where Faust's decorator raises and catches ``SameNode`` on every such request.
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
            router = cast(ShopRouter, app.router)
            return await router.on_owner(table.name, key, view.web, request,
                                         lambda: method(view, request, *args, **kwargs))

        return routed

    return decorator
