"""Admin operations over the central log: ``/api/admin/logs``, ``/api/admin/alerts``.

Every worker consumes a share of the one ``logs.central`` queue into its own store
(rabbit_bridge/central_logs.py), so a read asks every worker of the cluster — the URLs
Faust's assignor knows — with a short timeout, and merges the answers newest first. A worker
that does not answer is named in ``workers`` (``complete`` is then false), never a 5xx. A
forwarded request (from another worker, proven by its HMAC) is answered from this worker's
store alone.

``POST /api/admin/logs/test`` writes a record at a chosen level through the standard logging
module, to check the pipeline end to end (an ERROR one raises an alert).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from faust.web import Request, Response
from pydantic import BaseModel, Field, field_validator

from app import app
from rabbit_bridge.central_logs import ALERT_LEVEL
from rabbit_bridge.log_records import level_number
from rabbit_bridge.log_store import LogFilter
from web.bodies import read_body, read_query
from web.identity import require
from web.middleware import REQUEST_ID_HEADER, forwarding_headers, is_forwarded, request_id
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["ID_PATTERN", "AlertQuery", "LogPage", "LogQuery", "LogRecordOut", "WorkerAnswer",
           "cluster_urls", "gather_records", "merge_newest_first"]

log = logging.getLogger(__name__)

#: Seconds another worker has to answer before it is reported as not answering.
GATHER_TIMEOUT_S = 2.0
MAX_LIMIT = 1000

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: A request id, or an order, ticket or user id, in a query.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class LogQuery(BaseModel):
    """Which log records: a service, a level and above, since a time, a substring, a request,
    a correlation id."""

    service: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,64}$",
                                description="the service (e.g. orders, users, admin)")
    level: Level | None = Field(default=None, description="this level and above")
    since: datetime | None = Field(default=None, description="ISO time (UTC if no offset)")
    q: str | None = Field(default=None, min_length=1, max_length=200,
                          description="a substring of the message (any case)")
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$",
                                   description="the records of one request (X-Request-Id)")
    correlation_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="the records of one correlation id (an order's id, for the saga)")
    order_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                 description="the records that name this order")
    ticket_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                  description="the records that name this support ticket")
    user_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                description="the records that name this user")
    about: str | None = Field(
        default=None, pattern=ID_PATTERN,
        description="the records of this request id, or that name this order, ticket or user")
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT, description="most records, newest first")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def chosen(self) -> LogFilter:
        """Return the store's filter of this query."""
        since = self.since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return LogFilter(service=self.service, level=self.level, since=since, q=self.q,
                         request_id=self.request_id, correlation_id=self.correlation_id,
                         order_id=self.order_id, ticket_id=self.ticket_id,
                         user_id=self.user_id, about=self.about)


class AlertQuery(BaseModel):
    """How many of the latest alerts."""

    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class LogRecordOut(BaseModel):
    """One log record of the central log."""

    event_id: str
    time: str
    service: str
    level: str
    logger: str = ""
    message: str
    request_id: str = ""
    correlation_id: str = ""
    worker: str = ""
    exception: str = ""
    order_id: str | None = Field(default=None, description="the order the record names")
    ticket_id: str | None = Field(default=None, description="the ticket the record names")
    user_id: str | None = Field(default=None, description="the user the record names")
    trace: dict[str, Any] | None = Field(
        default=None, description="the step of a trace the record marks: kind http (method, "
        "path, status, ms), event (agent, topic, partition, offset, type) or mail")


class WorkerAnswer(BaseModel):
    """How one worker of the cluster answered: its URL, records or error."""

    url: str
    ok: bool
    count: int = 0
    error: str | None = None


class LogPage(BaseModel):
    """Records from every worker's store, newest first; ``complete`` if every worker answered."""

    items: list[LogRecordOut]
    workers: list[WorkerAnswer]
    complete: bool


class TestRecordIn(BaseModel):
    """A test record to log: its level and message."""

    level: Level = "INFO"
    message: str = Field(min_length=1, max_length=500)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class TestRecordOut(BaseModel):
    """The test record that was logged (find it by its request id)."""

    request_id: str
    level: str
    message: str


def cluster_urls() -> list[str]:
    """Return the web URLs of every worker of the cluster (this one first)."""
    own = _normal(str(app.conf.canonical_url))
    found = [own]
    metadata: dict[str, Any] = {}
    for source in ("tables_metadata", "external_topics_metadata"):
        try:
            metadata.update(getattr(app.router, source)())
        except (AttributeError, KeyError):
            continue
    for url in metadata:
        if _normal(str(url)) not in found:
            found.append(_normal(str(url)))
    return found


def merge_newest_first(answers: list[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Return the records of ``answers`` merged newest first, each once, at most ``limit``."""
    seen: set[str] = set()
    merged = []
    for entry in sorted((e for answer in answers for e in answer),
                        key=lambda e: str(e.get("time", "")), reverse=True):
        key = str(entry.get("event_id", ""))
        if key and key in seen:
            continue
        seen.add(key)
        merged.append(entry)
        if len(merged) >= limit:
            break
    return merged


def _normal(url: str) -> str:
    return url.rstrip("/")


async def _ask(url: str, request: Request,
               asking: str | None = None) -> tuple[list[dict[str, Any]], WorkerAnswer]:
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
    headers.update(forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret))
    headers[REQUEST_ID_HEADER] = request_id(request)
    target = url + (asking or str(request.rel_url))
    try:
        async with app.http_client.get(
                target, headers=headers,
                timeout=aiohttp.ClientTimeout(total=GATHER_TIMEOUT_S)) as answer:
            body = await answer.json()
            if answer.status != 200:
                message = body.get("error", {}).get("message") if isinstance(body, dict) else ""
                return [], WorkerAnswer(url=url, ok=False, error=f"{answer.status}: {message}")
            items = list(body.get("items", []))
            return items, WorkerAnswer(url=url, ok=True, count=len(items))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [], WorkerAnswer(url=url, ok=False,
                                error=f"{type(exc).__name__}: {exc}")


async def gather_records(request: Request, chosen: LogFilter, limit: int,
                         asking: str | None = None) -> dict[str, Any]:
    """Return a LogPage of the records matching ``chosen`` from every worker.

    The other workers are asked ``asking`` (a /api/admin/logs path and query that says the
    same as ``chosen``), by default the URL of ``request`` itself.
    """
    own = await app.services.central_logs.read(chosen, limit)
    answers = [own]
    stored = app.services.central_logs.store is not None
    workers = [WorkerAnswer(url=cluster_urls()[0], ok=stored, count=len(own),
                            error=None if stored else "no store")]
    if not is_forwarded(request, app.settings.jwt_secret):
        asked = await asyncio.gather(*(_ask(url, request, asking)
                                       for url in cluster_urls()[1:]))
        for items, answer in asked:
            answers.append(items)
            workers.append(answer)
    return {"items": merge_newest_first(answers, limit),
            "workers": [w.model_dump() for w in workers],
            "complete": all(w.ok for w in workers)}


@endpoint("GET", "/api/admin/logs", query=LogQuery, response=LogPage, roles=("admin",))
class LogsView(ShopView):
    """The central log, newest first, from every worker of the cluster."""

    async def get(self, request: Request) -> Response:
        """Search the central log (service, level and above, since, message substring, the
        request, the order, ticket or user a record names)."""
        require(request, "admin")
        query = read_query(request, LogQuery)
        return self.json(await gather_records(request, query.chosen(), query.limit))


@endpoint("GET", "/api/admin/alerts", query=AlertQuery, response=LogPage, roles=("admin",))
class AlertsView(ShopView):
    """The latest alerts: ERROR and CRITICAL log records, newest first."""

    async def get(self, request: Request) -> Response:
        """List the latest alerts (ERROR and CRITICAL records) of the whole cluster."""
        require(request, "admin")
        query = read_query(request, AlertQuery)
        return self.json(await gather_records(request, LogFilter(level=ALERT_LEVEL),
                                              query.limit))


@endpoint("POST", "/api/admin/logs/test", body=TestRecordIn, response=TestRecordOut,
          status=202, roles=("admin",))
class TestRecordView(ShopView):
    """Log a test record at a chosen level (an ERROR one raises an alert)."""

    async def post(self, request: Request) -> Response:
        """Log a test record, to check the central log and alerts end to end."""
        caller = require(request, "admin")
        body = await read_body(request, TestRecordIn)
        log.log(level_number(body.level), "test record from admin %s: %s",
                caller.user_id, body.message)
        return self.json({"request_id": request_id(request), "level": body.level,
                          "message": body.message}, status=202)
