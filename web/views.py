"""The base of every ShopStream view: errors in the one JSON shape, counted with their status.

Faust's ``View`` answers its own errors (a method the view does not have, for one) as
``{"error": "..."}``, and counts any other exception as a 500 in ``/metrics`` before the
error middleware turns it into a 4xx. ``ShopView`` answers both in the shop's error shape
inside the view, so the metrics see the status the client gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from web.errors import ApiError, error_response

__all__ = ["ShopView"]


class ShopView(View):
    """A Faust view whose errors have the shop's JSON error shape."""

    async def dispatch(self, request: Any) -> Any:
        """Call the handler of the request's method; answer errors in the one shape."""
        app = self.app
        method = cast(Callable[..., Awaitable[Response]],
                      self.methods[request.method.lower()])
        sensor_state = app.sensors.on_web_request_start(app, request, view=self)
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
            app.sensors.on_web_request_end(app, request, response, sensor_state, view=self)
        return response

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        """Answer one of Faust's own web errors in the shop's error shape."""
        headers = None
        if exc.code == 405:
            headers = {"Allow": ", ".join(sorted(self.get_methods()))}
        return cast(Response, error_response(int(exc.code), str(exc.detail), headers=headers))
