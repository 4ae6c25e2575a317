"""The worker's web server: Faust's aiohttp driver, with two layers less on every request.

- No ``aiohttp_cors``: Faust's driver sets it up at start whether or not any route uses it,
  and it then runs a response-prepare signal on every answer. The gateway
  (``web/middleware.py``) answers CORS for the shop, from ``SHOP_CORS_ORIGINS``.
- A view whose class sets ``dispatch_directly`` (``web/views.py``, ``ShopView``) is routed to
  its ``dispatch`` directly: Faust wraps each view in a coroutine that awaits
  ``View.__call__``, which awaits ``dispatch``.

Routes of other handlers (Faust's own views, if enabled) keep Faust's wrapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from faust.web.drivers.aiohttp import Web as AiohttpWeb

__all__ = ["ShopWeb"]


class _NoCors:
    """Stands in for ``aiohttp_cors``'s config: Faust's driver asks for it at start."""

    def add(self, route: Any, config: Any = None) -> Any:
        raise RuntimeError("per-route CORS is not used here: the gateway answers CORS "
                           "(set SHOP_CORS_ORIGINS)")


class ShopWeb(AiohttpWeb):
    """Faust's aiohttp web driver without aiohttp_cors, routing views to their dispatch."""

    @property
    def cors(self) -> Any:
        """Return the stand-in: no aiohttp_cors signal on every response."""
        return _NoCors()

    def _wrap_into_asyncdef(self, handler: Callable) -> Callable:
        if getattr(handler, "dispatch_directly", False):
            return cast(Callable, cast(Any, handler).dispatch)
        return super()._wrap_into_asyncdef(handler)
