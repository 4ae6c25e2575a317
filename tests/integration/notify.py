"""Helpers of the notifications tests: calls with retries, registration, an SSE client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import aiohttp

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory

__all__ = ["SseClient", "call", "private_rabbit", "register", "start", "until"]

PASSWORD = "notify password 1"


def private_rabbit(workers: WorkerFactory) -> Iterator[str]:
    """Yield the URL of the test's own RabbitMQ vhost (the ``workers`` fixture makes one)."""
    yield workers.vhost_url


async def start(workers: WorkerFactory, name: str = "w1", **settings: str) -> Worker:
    """Start a worker (light password hashing) and wait until it is ready."""
    worker = workers.start(name, SHOP_PASSWORD_HASH_COST="light", **settings)
    await asyncio.to_thread(worker.wait_ready)
    return worker


async def call(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
               body: Any = None) -> tuple[int, Any]:
    """Return (status, JSON body), retrying while a key's owner is being assigned (503)."""
    for _ in range(50):
        async with http.request(method, url, headers=headers, json=body) as answer:
            status, data = answer.status, await answer.json()
        if status != 503:
            return status, data
        await asyncio.sleep(0.2)
    return status, data


async def until(http: aiohttp.ClientSession, url: str, headers: dict[str, str], ok: Any,
                within: float = 20.0) -> Any:
    """GET ``url`` until ``ok(status, body)``; return the body."""
    deadline = time.monotonic() + within
    while True:
        status, body = await call(http, "GET", url, headers)
        if ok(status, body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up on {url}: {status} {body}")
        await asyncio.sleep(0.1)


async def register(http: aiohttp.ClientSession, base_url: str, email: str,
                   name: str = "Notified") -> str:
    """Register a user through the API; return their id."""
    status, user = await call(http, "POST", base_url + "/api/users", {},
                              {"email": email, "password": PASSWORD, "name": name})
    assert status == 201, user
    return str(user["id"])


class SseClient:
    """One server-sent event stream: ``next()`` returns (event, data, id)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, headers: dict[str, str], *,
                 last_event_id: str | None = None, path: str = "/api/notifications/stream",
                 wait: float = 60.0) -> None:
        self.http = http
        self.url = f"{base_url}{path}?wait={wait}"
        self.headers = {**headers, "Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> SseClient:
        self.response = await self.http.get(self.url, headers=self.headers,
                                            timeout=aiohttp.ClientTimeout(total=None))
        assert self.response.status == 200, await self.response.text()
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.response is not None:
            self.response.close()

    async def next(self, within: float = 10.0) -> tuple[str, dict[str, Any], str]:
        """Return the next event (pings skipped); TimeoutError if none comes ``within``."""
        assert self.response is not None
        name, data, event_id = "message", "", ""
        async with asyncio.timeout(within):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise ConnectionError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif not line and data:
                    return name, json.loads(data), event_id
