"""Read your writes: a write answers once the table that owns it has applied it, and a request
that carries a ``Shop-Position`` token waits until the token's positions are applied.

A view that writes through a topic takes the send's position (:func:`written`) and awaits
:func:`visible` (or :func:`pending`): on the worker that owns the partition (here, or asked
over HTTP), the topic's applier has handled the event (runtime/positions.py), and so have the
appliers of what that handling sent to the topics the write's topic follows (``FOLLOWS``: one
hop further, e.g. a registration's user row). A global table's topic is applied by every
worker, so its write waits for every worker of the group. When the wait
(``SHOP_WRITE_WAIT_S``) runs out, the view answers 202 with :func:`accepted`: a
``Location`` and a ``Shop-Position`` token (models/positions.py) the client sends back,
naming the last hop known of each write; honouring a token follows the hops after it too.

:func:`honour_position` is called by every view (web/views.ShopView) before its handler: a
request with the header waits, bounded, until the owners have applied the token's positions;
a malformed or forged token is a 400 (``bad_position``), an owner that cannot say so in time
(gone, moving, not restored) a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import aiohttp
from aiohttp import web as aioweb
from yarl import URL

from models.positions import BadToken, Written, decode_token, encode_token
from runtime.positions import APPLIERS, GLOBAL_TOPICS, positions
from runtime.routing import OwnerUnknown, ShopRouter
from web.errors import ApiError
from web.middleware import forwarding_headers, is_forwarded
from web.routing import Unavailable

__all__ = [
    "POSITIONS_PATH",
    "POSITION_HEADER",
    "BadPosition",
    "accepted",
    "honour_position",
    "pending",
    "visible",
    "written",
]

POSITION_HEADER = "Shop-Position"
#: Where a worker answers its applied positions (and waits for a token's first).
POSITIONS_PATH = "/positions"
#: The most hops a wait follows from a write (a claim, then the user it registers, then
#: nothing: FOLLOWS loops only through events that cause nothing more, and this bound holds
#: even if one did).
MAX_HOPS = 3


class BadPosition(ApiError):
    """A ``Shop-Position`` header that this shop did not issue."""

    status = 400
    code = "bad_position"


def written(metadata: Any) -> Written:
    """Return where a send landed, from its ``RecordMetadata``."""
    return Written(metadata.topic, metadata.partition, metadata.offset)


def _wait_s(app: Any) -> float:
    return float(app.settings.write_wait_s)


async def visible(app: Any, sent: Iterable[Written], seconds: float | None = None) -> bool:
    """Wait until the API shows every write of ``sent``, and what it causes one hop later
    (see :func:`pending`), on any worker; False if the wait (default ``SHOP_WRITE_WAIT_S``)
    ran out or an owner moved or is unknown."""
    return not await pending(app, sent, seconds)


async def pending(app: Any, sent: Iterable[Written], seconds: float | None = None
                  ) -> list[Written]:
    """Wait until the API shows every write of ``sent`` on any worker, and the messages their
    applying sent to the topics theirs follow (``runtime.positions.FOLLOWS``: a claim's user,
    a restock's catalog stock level, an order's place in its customer's list); return what is
    not shown when the wait (default ``SHOP_WRITE_WAIT_S``) ran out or an owner moved or is
    unknown: of each write, its last hop known (what a token names), none if all is shown."""
    seconds = _wait_s(app) if seconds is None else seconds
    deadline = asyncio.get_running_loop().time() + seconds
    found = await asyncio.gather(*(_pending(app, position, deadline, MAX_HOPS)
                                   for position in sent))
    return [position for positions_ in found for position in positions_]


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def _pending(app: Any, position: Written, deadline: float, hops: int) -> list[Written]:
    """Return [] once ``position`` and its causes are shown on any worker, else what is not."""
    router = cast(ShopRouter, app.router)
    if position.topic in GLOBAL_TOPICS:  # applied by every worker, and causing nothing more
        left = _left(deadline)
        here, *there = await asyncio.gather(
            positions.wait(position.topic, position.partition, position.offset, left),
            *(_ask(app, url, position, left) for url in router.other_workers()))
        return [] if here == "applied" and all(there) else [position]
    try:
        owner = router.partition_owner(position.topic, position.partition)
    except OwnerUnknown:
        return [position]
    if owner is None:
        return await _pending_here(app, position, deadline, hops)
    return [] if await _ask(app, owner, position, _left(deadline)) else [position]


async def _pending_here(app: Any, position: Written, deadline: float, hops: int
                        ) -> list[Written]:
    """:func:`_pending` on the owner of ``position``'s partition: applied here, then each of
    what its applying sent to a followed topic, wherever that is applied."""
    outcome = await positions.wait(position.topic, position.partition, position.offset,
                                   _left(deadline))
    if outcome != "applied":
        return [position]
    if hops <= 0:
        return []
    caused = await positions.caused(position.topic, position.partition, position.offset,
                                    _left(deadline))
    if caused is None:  # not sent yet: the position names what is still to come
        return [position]
    found = await asyncio.gather(*(_pending(app, Written(*landed), deadline, hops - 1)
                                   for landed in caused))
    return [later for laters in found for later in laters]


async def _ask(app: Any, url: URL, position: Written, seconds: float) -> bool:
    """Return True once the worker at ``url`` says it applied ``position``."""
    settings = app.settings
    headers = forwarding_headers(str(app.conf.canonical_url), settings.jwt_secret)
    headers[POSITION_HEADER] = encode_token([position], settings.jwt_secret)
    try:
        async with app.http_client.get(
                str(url.with_path(POSITIONS_PATH)), headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds + 2.0)) as answer:
            return bool(answer.status == 200)
    except (aiohttp.ClientError, TimeoutError):
        return False


def accepted(view: Any, body: Any, location: str, sent: Sequence[Written], *,
             headers: Mapping[str, str] | None = None) -> Any:
    """Return the 202 of ``view``'s write not shown in time: ``body`` (the resource as the
    write will make it), its ``Location`` and the ``Shop-Position`` token."""
    token = encode_token(sent, view.app.settings.jwt_secret)
    return view.json(body, status=202, headers={**(headers or {}), "Location": location,
                                                POSITION_HEADER: token})


async def honour_position(app: Any, request: aioweb.Request) -> None:
    """Return once the owners applied the positions of the request's ``Shop-Position``
    (none: at once); raise :class:`BadPosition` (400) or :class:`Unavailable` (503)."""
    header = request.headers.get(POSITION_HEADER)
    if header is None:
        return
    try:
        wanted = decode_token(header, app.settings.jwt_secret, APPLIERS)
    except BadToken as exc:
        raise BadPosition(str(exc), details=[{"field": POSITION_HEADER,
                                              "problem": str(exc)}]) from None
    seconds = _wait_s(app)
    outcomes = await asyncio.gather(*(_reached(app, request, position, seconds)
                                      for position in wanted))
    for position, reached in zip(wanted, outcomes, strict=True):
        if not reached:
            raise Unavailable(f"{position.topic}[{position.partition}] has not applied "
                              f"offset {position.offset} yet on its owner; retry in a second")


async def _reached(app: Any, request: aioweb.Request, position: Written,
                   seconds: float) -> bool:
    if position.topic in GLOBAL_TOPICS:
        outcome = await positions.wait(position.topic, position.partition, position.offset,
                                       seconds)
        return outcome == "applied"
    try:
        owner = cast(ShopRouter, app.router).partition_owner(position.topic,
                                                             position.partition)
    except OwnerUnknown as exc:
        raise Unavailable(str(exc)) from None
    if owner is not None:
        # Asked by another worker that took us for the owner: ownership is moving.
        return (not is_forwarded(request, app.settings.jwt_secret)
                and await _ask(app, owner, position, seconds))
    deadline = asyncio.get_running_loop().time() + seconds
    return not await _pending_here(app, position, deadline, MAX_HOPS)
