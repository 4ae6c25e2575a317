"""Long-lived responses (server-sent events) end when the worker stops.

A stream's handler runs until its client leaves; aiohttp's graceful shutdown would wait for it
(Faust's driver: up to 60 s) before stopping the worker. Each stream handler calls
:func:`track_stream`; when the web server shuts down, the tracked handlers are cancelled, the
streams close, and the clients (EventSource) reconnect to another worker.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import cast

from aiohttp import web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from app import app

__all__ = ["end_streams", "track_stream"]

_open: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()


def track_stream() -> None:
    """End the current handler's stream when the web server shuts down."""
    task = asyncio.current_task()
    if task is not None:
        _open.add(task)


async def end_streams(web_app: web.Application) -> None:
    """Cancel every open stream (an aiohttp ``on_shutdown`` hook)."""
    for task in list(_open):
        task.cancel()


cast(AiohttpWeb, app.web).web_app.on_shutdown.append(end_streams)
