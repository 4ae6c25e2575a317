"""The one JSON error shape, the API's exception family and the middleware that maps them.

Every error a client sees is ``{"error": {"code", "message", "details"}}``: 4xx for the
caller's mistakes (including unknown routes and wrong methods), 5xx only for ours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "KeyInProgress",
    "KeyReused",
    "NotFound",
    "error_answer",
    "error_body",
    "error_middleware",
    "error_response",
]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error for the caller: an HTTP status, a stable code, a message and details."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    """The request is malformed (not JSON, wrong fields); the message says what to fix."""

    status = 400
    code = "bad_request"


class NotFound(ApiError):
    """The named resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The resource exists already, or its state does not allow the change; the message
    says which."""

    status = 409
    code = "conflict"


class KeyReused(ApiError):
    """The Idempotency-Key was used before with another request body."""

    status = 422
    code = "idempotency_key_reused"


class KeyInProgress(ApiError):
    """The request with this Idempotency-Key is still being processed; retry shortly."""

    status = 409
    code = "idempotency_key_in_progress"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def error_body(status: int, message: str, *, code: str | None = None,
               details: Any = None) -> dict[str, Any]:
    """Return the JSON error document."""
    return {"error": {"code": code or _CODES.get(status, "error"), "message": message,
                      "details": details}}


def error_response(status: int, message: str, *, code: str | None = None,
                   details: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    """Return an aiohttp response carrying the JSON error document."""
    return web.Response(
        status=status,
        text=json.dumps(error_body(status, message, code=code, details=details)),
        content_type="application/json",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(request: web.Request, exc: Exception) -> web.Response | None:
    """Return the one-shape answer to ``exc`` raised by a handler (None: not an error).

    An :class:`ApiError` keeps its status, code and headers; aiohttp's own 4xx/5xx (unknown
    route, wrong method) keep their status and ``Allow``/``Retry-After``; anything else is
    logged and answered as a 500. A redirect or other HTTPException below 400 is not an
    error: None tells the caller to re-raise it.
    """
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, code=exc.code, details=exc.details,
                              headers=exc.headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        message = exc.reason if exc.status != 404 else f"no route for {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, message, headers=headers)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal error; the request id is in the logs",
                          code="internal")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error with the one JSON shape."""
    try:
        return await handler(request)
    except Exception as exc:
        answer = error_answer(request, exc)
        if answer is None:
            raise
        return answer
