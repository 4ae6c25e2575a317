"""The base of every ShopStream view: errors in the one JSON shape, counted with their status,
and a ``Shop-Position`` token honoured before the handler runs (web/positions.py).

A row that is not restored yet is not a row that does not exist: while the worker's tables
are recovering, a rebalance is under way or a partition it took over has not applied what it
held then (runtime/positions.py), a view's 404 is answered 503 with Retry-After.

Faust's ``View`` answers its own errors (a method the view does not have, for one) as
``{"error": "..."}``, and counts any other exception as a 500 in ``/metrics`` before the
error middleware turns it into a 4xx. ``ShopView`` answers both in the shop's error shape
inside the view, so the metrics see the status the client gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from aiohttp import web as aioweb
from faust.utils import json as faust_json
from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from runtime.positions import positions
from runtime.tables import tables_ready
from web.errors import ApiError, error_response
from web.positions import POSITION_HEADER, honour_position

__all__ = ["NotRestored", "ShopView", "json_bytes"]

#: Faust's JSON encoder (datetimes, UUIDs, records), made once instead of once a response.
_ENCODER = faust_json.JSONEncoder(separators=(",", ":"),
                                  **faust_json._JSON_DEFAULT_KWARGS)


def json_bytes(value: Any) -> bytes:
    """Return the bytes :meth:`ShopView.json` would answer for ``value``."""
    return _ENCODER.encode(value).encode()


class NotRestored(ApiError):
    """A row was not found while this worker's tables are being restored, reassigned or
    caught up."""

    status = 503
    code = "unavailable"

    def __init__(self) -> None:
        super().__init__("this worker is restoring or taking over its tables, so the row may "
                         "exist; retry in a second", headers={"Retry-After": "1"})


class ShopView(View):
    """A Faust view whose errors have the shop's JSON error shape."""

    #: The web server (runtime/web.py) routes requests to :meth:`dispatch` itself.
    dispatch_directly = True

    async def dispatch(self, request: Any) -> Any:
        """Call the handler of the request's method; answer errors in the one shape."""
        app = self.app
        method = cast(Callable[..., Awaitable[Response]],
                      self.methods[request.method.lower()])
        sensors = app.sensors
        sensor_state = sensors.on_web_request_start(app, request, view=self)
        response: Response | None = None
        try:
            if POSITION_HEADER in request.headers:  # most requests carry none
                await honour_position(app, request)
            response = await method(cast(Request, request), **(request.match_info or {}))
        except ApiError as exc:
            if exc.status == 404 and not (tables_ready(app) and positions.caught_up()):
                exc = NotRestored()
            response = cast(Response, error_response(
                exc.status, exc.message, code=exc.code, details=exc.details,
                headers=exc.headers))
        except WebError as exc:
            response = await self.on_request_error(request, exc)
        finally:
            sensors.on_web_request_end(app, request, response, sensor_state, view=self)
        return response

    def json(self, value: Any, *, content_type: str | None = None, status: int = 200,
             reason: str | None = None, headers: MutableMapping | None = None) -> Response:
        """Return a JSON response, as Faust's ``View.json`` does (same encoder and bytes)."""
        return cast(Response, aioweb.Response(
            text=_ENCODER.encode(value), content_type=content_type or "application/json",
            status=status, reason=reason, headers=headers))

    def json_bytes(self, body: bytes, *, status: int = 200,
                   headers: MutableMapping | None = None) -> Response:
        """Return a JSON response of ``body``, encoded already (:func:`json_bytes`): the
        same answer as :meth:`json` of the value, headers included."""
        return cast(Response, aioweb.Response(
            body=body, content_type="application/json", charset="utf-8", status=status,
            headers=headers))

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        """Answer one of Faust's own web errors in the shop's error shape."""
        headers = None
        if exc.code == 405:
            headers = {"Allow": ", ".join(sorted(self.get_methods()))}
        return cast(Response, error_response(int(exc.code), str(exc.detail), headers=headers))
