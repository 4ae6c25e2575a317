"""A closed-loop HTTP load client, and the bare aiohttp server it is compared against.

The client keeps ``concurrency`` keep-alive connections, each sending its next GET as soon as
the previous answer is read, and times every request. It speaks just enough HTTP/1.1 on
asyncio streams (answers with ``Content-Length``): aiohttp's own client spends several times
more CPU a request, and on a small machine the client would then measure itself.

``python -m bench.http_load PORT`` serves the bare handler: one aiohttp route answering a
small JSON document, nothing else (no middleware), on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.errors import BenchError
from bench.report import say

__all__ = ["BARE_PATH", "Load", "percentile", "process_cpu_seconds", "run_load"]

BARE_PATH = "/hello"
#: About the size of a user profile, so both sides send a similar amount.
BARE_DOCUMENT = {"id": "0" * 32, "email": "bench@example.com", "name": "Bench",
                 "roles": ["customer"], "created_at": "2024-01-01T00:00:00+00:00",
                 "active": True}
PROGRESS_EVERY_S = 5.0


@dataclass
class Load:
    """What one run measured: wall seconds, each request's latency, and CPU on both sides."""

    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        """Return requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def ms(self, fraction: float) -> float:
        """Return the latency percentile ``fraction`` in milliseconds."""
        return round(percentile(self.latencies, fraction) * 1000.0, 2)


def percentile(values: list[float], fraction: float) -> float:
    """Return the ``fraction`` percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def process_cpu_seconds(pid: int) -> float | None:
    """Return the user + system CPU seconds of process ``pid`` (None where /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_request(host: str, port: int, path: str, headers: Mapping[str, str], *,
                 method: str = "GET", json_body: Any = None) -> bytes:
    """Return the bytes of one keep-alive HTTP/1.1 request (with a JSON body if given)."""
    data = b"" if json_body is None else json.dumps(json_body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{name}: {value}" for name, value in headers.items())]
    if json_body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        raise BenchError(f"an answer without Content-Length: {head[:200]!r}")
    end = lower.index(b"\r\n", start + 2)
    body = await reader.readexactly(int(lower[start + 17:end]))
    if b"\r\nconnection: close" in lower:
        raise BenchError("the server closed a keep-alive connection")
    return status, body


async def run_load(host: str, port: int, path: str, *, requests: int, concurrency: int,
                   headers: Mapping[str, str] | None = None, server_pid: int | None = None,
                   label: str = "", payload: bytes | None = None, expect: int = 200) -> Load:
    """Send ``requests`` requests over ``concurrency`` connections; each answer ``expect``.

    The request is a GET of ``path`` unless ``payload`` gives its bytes (``http_request``).
    """
    payload = payload or http_request(host, port, path, headers or {})
    remaining = requests
    latencies: list[float] = []

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(payload)
                status, body = await _answer(reader)
                latencies.append(time.perf_counter() - started)
                if status != expect:
                    raise BenchError(f"{path} answered {status}: {body[:300]!r}")
        finally:
            writer.close()

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            say(f"http: {label or path}: {len(latencies):,} of {requests:,} requests")

    server_before = process_cpu_seconds(server_pid) if server_pid else None
    client_before = time.process_time()
    reporter = asyncio.create_task(progress())
    began = time.perf_counter()
    try:
        await asyncio.gather(*(connection() for _ in range(concurrency)))
    finally:
        reporter.cancel()
    seconds = time.perf_counter() - began
    server_after = process_cpu_seconds(server_pid) if server_pid else None
    server_cpu = (server_after - server_before
                  if server_after is not None and server_before is not None else None)
    return Load(len(latencies), seconds, latencies, time.process_time() - client_before,
                server_cpu)


async def _hello(request: web.Request) -> web.Response:
    return web.json_response(BARE_DOCUMENT)


def serve_bare(port: int) -> None:
    """Serve the bare handler on 127.0.0.1:``port`` until terminated."""
    app = web.Application()
    app.router.add_get(BARE_PATH, _hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    serve_bare(int(sys.argv[1]))
