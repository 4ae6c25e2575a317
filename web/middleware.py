"""The gateway's middleware (besides the error shape in ``web/errors.py``): request ids, rate
limits, CORS, and which worker answered.

:func:`gateway` is the one middleware the app installs: it does, in this order on the way in,
what the separate middlewares below do (served_by outermost, request id, CORS, rate limit,
error shape, view), in one coroutine frame instead of five. The pieces are plain functions
(:func:`accept_request_id`, :func:`cors_headers`, :func:`rate_limited`, ``error_answer``)
shared by both forms; the separate middlewares remain for tests and small apps.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from models.tracing import REQUEST_ID, SUBJECT, TRACE_LOGGER, valid_id
from web.errors import Handler, error_answer, error_response

__all__ = [
    "REQUEST_ID",
    "accept_request_id",
    "cors",
    "cors_headers",
    "forwarding_headers",
    "gateway",
    "install_request_id_logging",
    "is_forwarded",
    "log_http_step",
    "rate_limited",
    "rate_limits",
    "request_id",
    "request_ids",
    "served_by",
]

SERVED_BY = "X-Served-By"
REQUEST_ID_HEADER = "X-Request-Id"
FORWARDED_BY = "X-Shop-Forwarded-By"  # set by web/routing.forward on forwarded reads
FORWARD_PROOF = "X-Shop-Forward-Proof"  # HMAC of FORWARDED_BY with the shared secret
CLIENT_ADDRESS = "X-Shop-Client-Address"  # the caller's address, on a forwarded request

_REQUEST_ID_KEY = web.RequestKey("request_id", str)

Middleware = Callable[[web.Request, Handler], Any]

#: One record per /api request answered: the HTTP step of a trace (models/tracing.py).
http_steps = logging.getLogger(f"{TRACE_LOGGER}.http")


def served_by(canonical_url: str) -> Middleware:
    """Return middleware that names the worker that answered (``X-Served-By``)."""

    @web.middleware
    async def add_served_by(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers.setdefault(SERVED_BY, canonical_url)
        return response

    return add_served_by


def forwarding_headers(canonical_url: str, secret: str) -> dict[str, str]:
    """Return the headers that mark a request as forwarded by this worker (provably)."""
    return {FORWARDED_BY: canonical_url, FORWARD_PROOF: _proof(canonical_url, secret)}


def is_forwarded(request: web.Request | Any, secret: str) -> bool:
    """Return True if ``request`` was forwarded by another worker (not a client's claim)."""
    by = request.headers.get(FORWARDED_BY)
    if not by:
        return False
    return hmac.compare_digest(request.headers.get(FORWARD_PROOF, ""), _proof(by, secret))


def _proof(canonical_url: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"forwarded-by:{canonical_url}".encode(),
                    hashlib.sha256).hexdigest()


def request_id(request: web.Request | Any) -> str:
    """Return the id of ``request`` (the caller's X-Request-Id, or one made for it)."""
    return str(request.get(_REQUEST_ID_KEY) or request.headers.get(REQUEST_ID_HEADER, ""))


def accept_request_id(given: str | None) -> str:
    """Return the caller's request id if it is a valid one, else a new random 32-hex id."""
    if given and _valid_id(given):
        return given
    return f"{_random_bits(128):032x}"


_valid_id = valid_id
_random_bits = random.getrandbits  # ids must be unique, not secret: no syscall per request


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the request id from X-Request-Id or make one; echo it; log with it."""
    rid = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[_REQUEST_ID_KEY] = rid
    token = REQUEST_ID.set(rid)
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


def install_request_id_logging() -> None:
    """Give every log record a ``request_id`` attribute (empty outside requests) and a
    ``shop_subject`` (what the event being handled is about: models.tracing.SUBJECT)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "shop_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        record.shop_subject = SUBJECT.get()
        return record

    record_with_request_id.shop_request_id = True  # type: ignore[attr-defined]
    record_with_request_id.shop_wraps = factory  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


def log_http_step(method: str, path: str, status: int, started: float) -> None:
    """Log that a request to ``path`` was answered ``status`` (``started``: perf_counter).

    Called while the request's id is current, so the record carries it. The record is the
    one ``http_steps.info`` makes, naming this function as its caller; see :func:`_step_record`.
    """
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    args = (method, path, status, took_ms)
    trace = {"kind": "http", "method": method, "path": path, "status": status, "ms": took_ms}
    plain = (getattr(logging.getLogRecordFactory(), "shop_wraps", None) is logging.LogRecord
             and threading.get_ident() == _MAIN_THREAD)
    if plain and _template is not None:
        record = _step_record(_template, args, trace)
    else:
        record = http_steps.makeRecord(http_steps.name, logging.INFO, _STEP_FILE, _STEP_LINE,
                                       _STEP_MESSAGE, args, None, "log_http_step",
                                       {"trace": trace})
        if plain:
            _remember_template(record)
    http_steps.handle(record)


_STEP_FILE = log_http_step.__code__.co_filename
_STEP_LINE = log_http_step.__code__.co_firstlineno
_STEP_MESSAGE = "%s %s %d in %.1f ms"
#: The fields every HTTP step record has alike, from the first one made in full.
_template: dict[str, Any] | None = None
_MAIN_THREAD = threading.main_thread().ident
_new_record = logging.LogRecord.__new__


def _remember_template(record: logging.LogRecord) -> None:
    global _template
    if "taskName" in record.__dict__:
        return  # a Python that names the current task in each record: made in full
    template = dict(record.__dict__)
    # When the logging module started, as LogRecord counts relativeCreated from it.
    template["_start"] = record.created - record.relativeCreated / 1000
    _template = template


def _forget_template() -> None:
    global _template
    _template = None  # a forked child has another pid


os.register_at_fork(after_in_child=_forget_template)


def _step_record(template: dict[str, Any], args: tuple[Any, ...],
                 trace: dict[str, Any]) -> logging.LogRecord:
    """Return the record ``logging.LogRecord`` and the request-id factory would make for an
    HTTP step on the event loop's (main) thread: the same fields, the constant ones copied.

    ``LogRecord.__init__`` works out its file name, module, thread and process names and
    asks the kernel for the pid on every record: a third of the step's logging.
    """
    record = _new_record(logging.LogRecord)
    fields = record.__dict__
    fields.update(template)
    start = fields.pop("_start")
    now = time.time()
    fields["args"] = args
    fields["created"] = now
    fields["msecs"] = int((now - int(now)) * 1000) + 0.0
    fields["relativeCreated"] = (now - start) * 1000
    fields["trace"] = trace
    fields["request_id"] = REQUEST_ID.get()
    fields["shop_subject"] = SUBJECT.get()
    return record


class TokenBuckets:
    """Token buckets per caller: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._taken = 0

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key``; return 0 if allowed, else the seconds to wait."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        self._taken += 1
        if self._taken % 10_000 == 0:
            self._forget_idle(now)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def rate_limited(request: web.Request, buckets: TokenBuckets,
                 caller: Callable[[Any], str], secret: str) -> web.Response | None:
    """Take a token for the caller of an /api request; return the 429 answer if it has none.

    Requests outside /api and requests proven forwarded by another worker (already counted
    there, proven with the shared ``secret``) are not limited.
    """
    if not request.path.startswith("/api/") or is_forwarded(request, secret):
        return None
    wait = buckets.take(caller(request), time.monotonic())
    if not wait:
        return None
    return error_response(
        429, f"too many requests; at most {buckets.rate:g} a second (burst {buckets.burst:g})",
        headers={"Retry-After": str(max(1, math.ceil(wait)))})


def rate_limits(rate: float, burst: float, caller: Callable[[Any], str],
                secret: str) -> Middleware:
    """Return middleware limiting each caller (``caller(request)``) on /api to ``rate``/s."""
    buckets = TokenBuckets(rate, burst)

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        return rate_limited(request, buckets, caller, secret) or await handler(request)

    return limit


_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, X-Request-Id",
    "Access-Control-Max-Age": "600",
}


def cors_allows(origins: frozenset[str], origin: str | None) -> bool:
    """Return True if a page on ``origin`` may call /api (``origins`` "*": any)."""
    return origin is not None and ("*" in origins or origin in origins)


def is_preflight(request: web.Request) -> bool:
    """Return True for a CORS preflight (OPTIONS with Access-Control-Request-Method)."""
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def cors_headers(headers: Any, origin: str, method: str) -> None:
    """Add the CORS headers of an allowed ``origin`` to response ``headers``."""
    headers["Access-Control-Allow-Origin"] = origin
    headers["Vary"] = "Origin"
    if method == "OPTIONS":
        headers.update(_PREFLIGHT_HEADERS)
    headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"


def cors(origins: frozenset[str]) -> Middleware:
    """Return middleware allowing browsers on ``origins`` ("*": any) to call /api."""

    @web.middleware
    async def allow_origins(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = cors_allows(origins, origin)
        if allowed and is_preflight(request):
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed and not response.prepared:
            cors_headers(response.headers, origin or "*", request.method)
        return response

    return allow_origins


def gateway(canonical_url: str, origins: frozenset[str], rate: float, burst: float,
            caller: Callable[[Any], str], secret: str) -> Middleware:
    """Return the one middleware of the API gateway.

    It behaves as ``served_by(canonical_url)``, ``request_ids``, ``cors(origins)``,
    ``rate_limits(rate, burst, caller, secret)`` and ``error_middleware`` in that order: every
    answer (errors, 429s and preflights included) carries the request id and X-Served-By,
    CORS headers for allowed origins, and every error has the one JSON shape.
    """
    buckets = TokenBuckets(rate, burst)

    @web.middleware
    async def shop_gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        rid = accept_request_id(headers.get(REQUEST_ID_HEADER))
        request[_REQUEST_ID_KEY] = rid
        token = REQUEST_ID.set(rid)
        origin = headers.get("Origin")
        allowed = origin is not None and cors_allows(origins, origin)
        traced = request.path.startswith("/api/") and http_steps.isEnabledFor(logging.INFO)
        started = time.perf_counter() if traced else 0.0
        status = 500
        try:
            if allowed and is_preflight(request):
                response: web.StreamResponse = web.Response(status=204)
            else:
                try:
                    response = (rate_limited(request, buckets, caller, secret)
                                or await handler(request))
                except Exception as exc:
                    answer = error_answer(request, exc)
                    if answer is None:
                        raise
                    response = answer
            status = response.status
        finally:
            if traced:
                log_http_step(request.method, request.path, status, started)
            REQUEST_ID.reset(token)
        if not response.prepared:
            answer_headers = response.headers
            answer_headers[REQUEST_ID_HEADER] = rid
            if allowed:
                cors_headers(answer_headers, origin or "*", request.method)
            if SERVED_BY not in answer_headers:
                answer_headers[SERVED_BY] = canonical_url
        return response

    return shop_gateway
