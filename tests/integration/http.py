"""HTTP helpers for integration tests: JSON calls with retries while a worker settles."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

__all__ = ["get_json", "wait_for_json"]


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, str]:
    """GET ``url``; return (status, JSON body, X-Served-By header)."""
    async with session.get(url) as response:
        return response.status, await response.json(), response.headers.get("X-Served-By", "")


async def wait_for_json(
    session: aiohttp.ClientSession, url: str, predicate: Any, *, within: float = 20.0
) -> tuple[int, Any, str]:
    """GET ``url`` until ``predicate(status, body)`` holds; return the last answer."""
    deadline = time.monotonic() + within
    last: tuple[int, Any, str] = (0, None, "")
    while time.monotonic() < deadline:
        try:
            last = await get_json(session, url)
        except (aiohttp.ClientError, TimeoutError):
            last = (0, None, "")
        if predicate(last[0], last[1]):
            return last
        await asyncio.sleep(0.2)
    return last
