"""Analytics HTTP: the live summary as server-sent events.

``GET /api/analytics/stream`` (admin) sends the ``summary`` event (the 10-minute summary,
as ``GET /api/analytics/summary`` answers it) at once and again whenever it changes, looked at
every CHECK_S seconds (so at most about once a second), and a keep-alive comment every
KEEPALIVE_S seconds while nothing changes. It reads this worker's copy of the merged windows
(see web/analytics_figures.py), so a stream on any worker is complete.

A browser cannot send a bearer header with ``EventSource``: the analytics pages read the
stream with ``fetch`` (which can), so no token ever goes into a URL.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp_sse import EventSourceResponse
from faust.web import Request, Response

from web.analytics_figures import SummaryOut, current_summary
from web.bodies import read_query
from web.identity import require
from web.openapi import endpoint
from web.queries import StreamQuery
from web.streams import track_stream
from web.support_stream import NotAcceptable
from web.views import ShopView

__all__ = ["CHECK_S", "KEEPALIVE_S"]

#: How often the summary is looked at (s), and how often a quiet stream sends a keep-alive.
CHECK_S = 1.0
KEEPALIVE_S = 15.0


@endpoint("GET", "/api/analytics/stream", query=StreamQuery, roles=("admin",),
          response=SummaryOut, errors=(406,),
          summary="The live 10-minute analytics summary (server-sent events 'summary').")
class AnalyticsStreamView(ShopView):
    """The 10-minute summary as server-sent events, whenever it changes (admin)."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        seconds = read_query(request, StreamQuery).wait
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise NotAcceptable("this is a stream of server-sent events: send "
                                "'Accept: text/event-stream'")
        stream = EventSourceResponse(ping_interval=KEEPALIVE_S)
        try:
            await stream.prepare(request)  # type: ignore[arg-type]
            track_stream()
            last = ""
            async with asyncio.timeout(seconds):
                while True:
                    text = _summary_text()  # ten small reads of the local copy
                    if text != last:
                        await stream.send(text, event="summary")
                        last = text
                    await asyncio.sleep(CHECK_S)
        except (TimeoutError, ConnectionResetError):
            pass
        return stream  # type: ignore[return-value]


_latest: tuple[float, str] = (0.0, "")


def _summary_text() -> str:
    """Return the 10-minute summary as JSON, made at most once a CHECK_S for every stream."""
    global _latest
    now = time.monotonic()
    if now - _latest[0] >= CHECK_S / 2:
        _latest = (now, json.dumps(current_summary("10m"), separators=(",", ":")))
    return _latest[1]
