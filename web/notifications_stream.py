"""The caller's notifications as server-sent events, answered on the worker that owns them.

The notifications agent writes a user's row on the worker that owns the user's key and wakes
that worker's streams of the user (tables/notifications.py). So a stream is served there: a
request that lands elsewhere is relayed, byte for byte, to the owner (the router's keyed
forwarding buffers whole answers, which a stream never ends). Every notification carries its
number in the user's sequence as the SSE id; a stream starts after ``Last-Event-ID`` (or
``?after=N``; neither: after the newest now) and sends each later notification once, in order,
so a client that reconnects misses nothing and gets nothing twice (as long as what it missed
is among the row's newest models.inbox.LIMIT). When the key moves to another worker the
stream ends and the client reconnects (EventSource does by itself).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import aiohttp
from aiohttp import web as aioweb
from aiohttp_sse import EventSourceResponse
from faust.web import Request, Response
from pydantic import Field

from app import app
from models.inbox import newer_than, public_item
from tables.notifications import inbox_watchers, inboxes
from web.bodies import read_query
from web.identity import require
from web.middleware import forwarding_headers, is_forwarded
from web.notifications import NotificationOut
from web.openapi import endpoint
from web.queries import StreamQuery
from web.routing import Unavailable, owner_url
from web.streams import track_stream
from web.support_stream import NotAcceptable
from web.views import ShopView

__all__ = ["NotificationStreamQuery", "NotificationStreamView"]

#: How often an idle stream checks that this worker still owns the caller's key (s).
OWNER_CHECK_S = 5.0
#: Request headers a relayed stream keeps.
_RELAYED = ("Authorization", "Accept", "Last-Event-ID", "X-Request-ID")


class NotificationStreamQuery(StreamQuery):
    """``?wait=N``: seconds to keep the stream open; ``?after=N``: start after that id."""

    after: int | None = Field(default=None, ge=0)


def start_after(request: Request, query: NotificationStreamQuery) -> int | None:
    """Return the id to start after: ``Last-Event-ID``, else ``?after``, else None (now)."""
    raw = request.headers.get("Last-Event-ID", "").strip()
    if raw.isdigit():
        return int(raw)
    return query.after


@endpoint("GET", "/api/notifications/stream", query=NotificationStreamQuery, roles=(),
          response=NotificationOut, errors=(406, 503),
          summary="The caller's notifications as server-sent events (the id is the "
                  "notification's seq; reconnect with Last-Event-ID).")
class NotificationStreamView(ShopView):
    """The caller's notifications as server-sent events (any signed-in user)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)
        query = read_query(request, NotificationStreamQuery)
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise NotAcceptable("this is a stream of server-sent events: send "
                                "'Accept: text/event-stream' (as EventSource does)")
        owner = await owner_url(inboxes.name, caller.user_id)
        if owner is not None and not is_forwarded(request, app.settings.jwt_secret):
            return await relay(request, str(owner))
        return await serve(request, caller.user_id, start_after(request, query), query.wait)


async def serve(request: Request, user_id: str, after: int | None, seconds: float) -> Response:
    """Stream ``user_id``'s notifications numbered above ``after`` from this worker's row."""
    changed = inbox_watchers.watch(user_id)
    last = after if after is not None else int((inboxes.get(user_id) or {}).get("seq", 0))
    stream = EventSourceResponse()
    try:
        await stream.prepare(request)  # type: ignore[arg-type]
        track_stream()
        async with asyncio.timeout(seconds):
            while True:
                changed.clear()
                for item in newer_than(inboxes.get(user_id), last):
                    await stream.send(json.dumps(public_item(item)), id=str(item["seq"]),
                                      event=item["kind"])
                    last = int(item["seq"])
                try:
                    await asyncio.wait_for(changed.wait(), OWNER_CHECK_S)
                except TimeoutError:
                    if not await _still_owner(user_id):
                        break  # the key moved: the client reconnects to the new owner
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        inbox_watchers.forget(user_id, changed)
    return stream  # type: ignore[return-value]


async def _still_owner(user_id: str) -> bool:
    try:
        return await owner_url(inboxes.name, user_id) is None
    except Exception:
        return False


async def relay(request: Request, owner: str) -> Response:
    """Relay the stream from the worker that owns the caller's key, as it comes."""
    incoming = cast(aioweb.Request, request)
    headers = {k: incoming.headers[k] for k in _RELAYED if k in incoming.headers}
    headers.update(forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret))
    url = f"{owner.rstrip('/')}{incoming.path_qs}"
    timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=None)
    out: aioweb.StreamResponse | None = None
    try:
        async with app.http_client.get(url, headers=headers, timeout=timeout) as answer:
            if answer.status != 200:
                body: Any = await answer.read()
                return cast(Response, aioweb.Response(
                    body=body, status=answer.status,
                    content_type=answer.content_type or "application/json"))
            out = aioweb.StreamResponse(status=200, headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                "X-Served-By": answer.headers.get("X-Served-By", "")})
            await out.prepare(incoming)
            track_stream()
            async for chunk in answer.content.iter_any():
                await out.write(chunk)
    except (aiohttp.ClientError, ConnectionResetError, TimeoutError):
        if out is None:
            raise Unavailable("the worker that owns your notifications does not answer; "
                              "retry in a second") from None
    return cast(Response, out)
