"""Middleware of every response (besides the error shape in ``web/errors.py``)."""

from __future__ import annotations

from aiohttp import web

from web.errors import Handler

__all__ = ["served_by"]

SERVED_BY = "X-Served-By"


def served_by(canonical_url: str) -> object:
    """Return middleware that names the worker that answered (``X-Served-By``)."""

    @web.middleware
    async def add_served_by(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers.setdefault(SERVED_BY, canonical_url)
        return response

    return add_served_by
