"""Support dashboard HTTP: the SLA figures and the live feed (server-sent events).

Both read this worker's copy of ``support_dashboard``, the global table the board agent
writes (see agents/support.py): every worker has every feed entry, so a stream on any worker
is complete. One :class:`FeedHub` per worker polls that copy every POLL_S seconds for
entries numbered above the last it saw and hands them to each open stream; an entry's number
(its offset on ``support-feed``) is the SSE id, so a client that reconnects with
``Last-Event-ID`` gets what it missed (while it is still among the last FEED_RING entries).

Events: ``sla`` (the figures, first), ``ticket_opened``, ``ticket_commented``,
``ticket_assigned``, ``ticket_resolved``, ``ticket_reopened``, ``sla_breach``, each followed
by ``workload`` (open tickets per assignee) when it changed the workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp_sse import EventSourceResponse
from faust.web import Request, Response
from pydantic import BaseModel

from app import app
from models.base import utcnow
from models.support_board import sla_figures
from tables.support import feed_entries, support_dashboard
from web.bodies import read_query
from web.errors import ApiError
from web.identity import require
from web.openapi import endpoint
from web.queries import StreamQuery
from web.streams import track_stream
from web.support_models import SlaOut
from web.views import ShopView

__all__ = ["FeedHub", "hub"]

#: How often the hub looks for new feed entries (s).
POLL_S = 0.1
#: Entries a slow stream may have queued before it is ended (the client reconnects).
QUEUE_LIMIT = 1000
#: Feed entries that change the workload (open tickets per assignee).
WORKLOAD_KINDS = frozenset({"ticket_opened", "ticket_assigned", "ticket_resolved",
                            "ticket_reopened"})


class FeedHub:
    """Hands new feed entries of this worker's dashboard copy to every open stream."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.last = -1

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """Return a queue that gets every entry after the newest one now."""
        if self._task is None or self._task.done():
            self.last = feed_entries(1 << 62)[1]
            self._task = asyncio.create_task(self._poll())
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Stop handing entries to ``queue``."""
        self._queues.discard(queue)

    async def _poll(self) -> None:
        while self._queues:
            entries, _ = feed_entries(self.last)
            for entry in entries:
                self.last = entry["seq"]
                for queue in list(self._queues):
                    try:
                        queue.put_nowait(entry)
                    except asyncio.QueueFull:  # too slow: end it, the client reconnects
                        self._queues.discard(queue)
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.get_nowait()
                            queue.put_nowait(None)
            await asyncio.sleep(POLL_S)


hub = FeedHub()


def current_figures() -> dict[str, Any]:
    """Return the SLA figures as this worker's dashboard copy has them now."""
    return sla_figures(support_dashboard.get("sla"), utcnow(),
                       app.settings.support_first_response_target)


@endpoint("GET", "/api/support/sla", roles=("support", "admin"), response=SlaOut)
class SlaView(ShopView):
    """Support SLA figures: first response and resolution times, open tickets by age."""

    async def get(self, request: Request) -> Response:
        require(request, "support", "admin")
        return self.json(current_figures())


class NotAcceptable(ApiError):
    """The client does not accept server-sent events (send Accept: text/event-stream)."""

    status = 406
    code = "not_acceptable"


class FeedOut(BaseModel):
    """A text/event-stream of dashboard events (this schema describes each event's data)."""

    seq: int
    kind: str
    at: str
    ticket: dict[str, Any]
    workload: dict[str, int]


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "")
    return int(raw) if raw.isdigit() else None


@endpoint("GET", "/api/support/stream", query=StreamQuery, roles=("support", "admin"),
          response=FeedOut, errors=(406,),
          summary="The live support dashboard (server-sent events): new tickets, comments, "
                  "assignments, resolutions, SLA breaches and workload.")
class SupportStreamView(ShopView):
    """The live support dashboard as server-sent events (support, admin)."""

    async def get(self, request: Request) -> Response:
        require(request, "support", "admin")
        seconds = read_query(request, StreamQuery).wait
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise NotAcceptable("this is a stream of server-sent events: send "
                                "'Accept: text/event-stream' (as EventSource does)")
        queue = hub.subscribe()
        after = _last_event_id(request)
        last = hub.last if after is None else after
        stream = EventSourceResponse()
        try:
            await stream.prepare(request)  # type: ignore[arg-type]
            track_stream()
            await stream.send(json.dumps(current_figures()), event="sla")
            backlog, _ = feed_entries(last)
            async with asyncio.timeout(seconds):
                for entry in backlog:
                    last = await _send(stream, entry, last)
                while (queued := await queue.get()) is not None:
                    last = await _send(stream, queued, last)
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            hub.unsubscribe(queue)
        return stream  # type: ignore[return-value]


async def _send(stream: EventSourceResponse, entry: dict[str, Any], last: int) -> int:
    """Send ``entry`` unless it is not newer than ``last``; return the newest sent."""
    if entry["seq"] <= last:
        return last
    await stream.send(json.dumps(entry), id=str(entry["seq"]), event=entry["kind"])
    if entry["kind"] in WORKLOAD_KINDS:
        await stream.send(json.dumps(entry["workload"]), event="workload")
    return int(entry["seq"])
