"""The web layer's part of the worker's web server: the gateway middleware in front of every
request, and the request id on every log record.

Loaded with the web layer (Faust's autodiscovery), before the web server starts; the server
itself is Faust's aiohttp driver as ``runtime/web.py`` changes it.
"""

from __future__ import annotations

from typing import Any, cast

from faust.web.drivers.aiohttp import Web as AiohttpWeb

from app import app
from web.identity import rate_key
from web.middleware import gateway, install_request_id_logging

__all__ = ["install_gateway"]


def install_gateway() -> None:
    """Put the gateway (served_by, request ids, CORS, rate limits and the error shape, in
    one) in front of the app's web server, once; and give log records their request id."""
    install_request_id_logging()
    middlewares = cast(AiohttpWeb, app.web).web_app.middlewares
    if not any(getattr(m, "shop_gateway", False) for m in middlewares):
        settings = app.settings
        middleware = gateway(settings.canonical_url, settings.cors_origins, settings.rate_limit,
                             settings.rate_burst, rate_key, settings.jwt_secret)
        middleware.shop_gateway = True  # type: ignore[attr-defined]
        middlewares.append(cast(Any, middleware))


install_gateway()
