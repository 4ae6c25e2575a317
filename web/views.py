"""The base of every ShopStream view: errors in the one JSON shape, counted with their status.

Faust's ``View`` answers its own errors (a method the view does not have, for one) as
``{"error": "..."}``, and counts any other exception as a 500 in ``/metrics`` before the
error middleware turns it into a 4xx. ``ShopView`` answers both in the shop's error shape
inside the view, so the metrics see the status the client gets.

:class:`ShopMonitor` is Faust's Prometheus sensor with cheaper bookkeeping on the hot paths
(a web request, a table read): the same metrics, with the labelled children looked up once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from time import monotonic
from typing import Any, cast

from aiohttp import web as aioweb
from faust.sensors.prometheus import PrometheusMonitor
from faust.types import AppT, CollectionT
from faust.utils import json as faust_json
from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from web.errors import ApiError, error_response

__all__ = ["ShopMonitor", "ShopView"]

#: Faust's JSON encoder (datetimes, UUIDs, records), made once instead of once a response.
_ENCODER = faust_json.JSONEncoder(separators=(",", ":"),
                                  **faust_json._JSON_DEFAULT_KWARGS)


class ShopView(View):
    """A Faust view whose errors have the shop's JSON error shape."""

    async def dispatch(self, request: Any) -> Any:
        """Call the handler of the request's method; answer errors in the one shape."""
        app = self.app
        method = cast(Callable[..., Awaitable[Response]],
                      self.methods[request.method.lower()])
        sensors = app.sensors
        sensor_state = sensors.on_web_request_start(app, request, view=self)
        response: Response | None = None
        try:
            response = await method(cast(Request, request), **(request.match_info or {}))
        except ApiError as exc:
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

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        """Answer one of Faust's own web errors in the shop's error shape."""
        headers = None
        if exc.code == 405:
            headers = {"Allow": ", ".join(sorted(self.get_methods()))}
        return cast(Response, error_response(int(exc.code), str(exc.detail), headers=headers))


class ShopMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor, cheaper a web request and a table read; the same metrics.

    ``shop_http_latency`` records each request's latency in ms (Faust's own sensor records
    the time since the request's end, about 0).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._status_counters: dict[int, tuple[HTTPStatus, Any]] = {}
        self._table_reads: dict[str, Any] = {}

    def on_web_request_start(self, app: AppT, request: Any, *,
                             view: Any = None) -> Any:
        """Return when the request started."""
        return monotonic()

    def on_web_request_end(self, app: AppT, request: Any, response: Any, state: Any, *,
                           view: Any = None) -> None:
        """Count the answer's status and observe its latency."""
        latency = monotonic() - cast(float, state)
        status = response.status if response is not None else 500
        known = self._status_counters.get(status)
        if known is None:
            code = HTTPStatus(status)
            known = self._status_counters[status] = (
                code, self._metrics.http_status_codes.labels(status_code=code))
        self.http_response_latency.append(latency)
        self.http_response_codes[known[0]] += 1
        known[1].inc()
        self._metrics.http_latency.observe(latency * 1000.0)

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        """Count a read of ``table``."""
        name = table.name
        counter = self._table_reads.get(name)
        if counter is None:
            counter = self._table_reads[name] = self._metrics.table_operations.labels(
                table=f"table.{name}", operation=self.KEYS_RETRIEVED)
        self._table_or_create(table).keys_retrieved += 1
        counter.inc()
