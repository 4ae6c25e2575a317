"""``GET /api/admin/trace/{id}``: one request, or one order's whole life, across every worker.

Answered from the central log, which holds every worker's records (web/admin.py gathers
them): the gateway's record of each HTTP request (``trace.http``), the record each agent
writes when it handles an event a request caused (``trace.events``: topic, partition,
offset, type), the mail sender's (``trace.mail``) and every other record written meanwhile,
all carrying the request id (models/tracing.py).

For a request id that is the records of the request. For an order id it is the records that
name the order, then every record of the requests those name (the HTTP request that placed
the order, the cancel, the ship...). The steps come oldest first (an HTTP request by when it
began), each once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from faust.web import Request, Response
from pydantic import BaseModel, Field

from models.tracing import request_ids_of, step_of, timeline, valid_id
from rabbit_bridge.log_store import LogFilter
from web.admin import MAX_LIMIT, WorkerAnswer, gather_records
from web.errors import BadRequest
from web.identity import require
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["TracePage", "TraceStep", "trace_of"]

#: Requests an order's trace follows at most (placing, cancelling, shipping, delivering...).
MAX_REQUESTS = 20


class TraceStep(BaseModel):
    """One step of a trace: an HTTP request, an event handled, a mail sent, or a log record."""

    at: str = Field(description="when the step began (ISO time, UTC)")
    time: str = Field(description="when its record was written")
    worker: str
    kind: str = Field(description="http, event, mail or log")
    what: str = Field(description="method and path, topic[partition]@offset, queue, or the "
                      "service")
    type: str = Field(description="the event's (or mail's) type, if any")
    summary: str
    level: str
    service: str
    request_id: str
    order_id: str
    event_id: str
    trace: dict[str, Any] | None = None


class TracePage(BaseModel):
    """The steps of a request or of an order, oldest first, from every worker."""

    id: str
    requests: list[str] = Field(description="the request ids the trace follows")
    steps: list[TraceStep]
    workers: list[WorkerAnswer]
    complete: bool = Field(description="every worker answered every look")


def _asking(**query: str) -> str:
    return "/api/admin/logs?" + urlencode({**query, "limit": str(MAX_LIMIT)})


async def trace_of(request: Request, wanted: str) -> dict[str, Any]:
    """Return the TracePage of ``wanted`` (a request id or an order, ticket or user id)."""
    first = await gather_records(request, LogFilter(about=wanted), MAX_LIMIT,
                                 _asking(about=wanted))
    records = list(first["items"])
    workers = list(first["workers"])
    complete = bool(first["complete"])
    followed = request_ids_of(reversed(records))[:MAX_REQUESTS]
    for rid in followed:
        if rid == wanted:
            continue
        more = await gather_records(request, LogFilter(request_id=rid), MAX_LIMIT,
                                    _asking(request_id=rid))
        records.extend(more["items"])
        complete = complete and bool(more["complete"])
    return {"id": wanted, "requests": followed,
            "steps": [step_of(step) for step in timeline(records)],
            "workers": workers, "complete": complete}


@endpoint("GET", "/api/admin/trace/{trace_id}", response=TracePage, roles=("admin",),
          errors=(400,))
class TraceView(ShopView):
    """Follow a request id or an order id through the gateway, the agents and the bridge."""

    async def get(self, request: Request, trace_id: str) -> Response:
        """The steps of a request (its id) or of an order's whole life (its id), oldest first,
        from every worker: HTTP requests, events handled on every topic, mail, log records."""
        require(request, "admin")
        if not valid_id(trace_id):
            raise BadRequest("a trace id is 1 to 128 letters, digits or ._:-")
        return self.json(await trace_of(request, trace_id))
