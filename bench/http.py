"""HTTP: requests/s and p50/p99 of the shop's reads against a bare aiohttp handler.

Two server processes on 127.0.0.1: a bare aiohttp app answering a small JSON document
(:mod:`bench.http_load`) and a real shop worker. A registered, logged-in customer with one
confirmed order; then, with ``concurrency`` keep-alive connections from this process (the
load client, apart from both servers), the same number of requests to each of
``GET /hello`` (bare), ``GET /health`` (the worker's floor: the gateway and a view answering
a constant, no token, no table), ``GET /api/users/me`` and ``GET /api/orders/{id}`` (a keyed
read, owned by the one worker). Each run is preceded by a warm-up. The shop's figures are
reported as ratios to the bare handler's, measured in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.errors import BenchError
from bench.http_load import BARE_PATH, Load, run_load
from bench.logs import bench_vhost
from bench.report import ADMIN, UNLIMITED, PhaseResult, say
from bench.shop_agent import _require_rabbitmq, _wait_ready
from scripts.devstack import (
    ROOT,
    Worker,
    broker_env,
    exit_with_parent,
    free_port,
    port_open,
    start_worker,
)

__all__ = ["http_results", "measure_http", "merge_loads"]

HOST = "127.0.0.1"
SKU = "HTTP-0001"
EMAIL, PASSWORD = "http-bench@example.com", "http bench password"
WARM_UP = 500


async def measure_http(broker: Any, workdir: Path, rabbit_url: str, requests: int,
                       concurrency: int, deadline: float, *, rounds: int = 1,
                       ) -> list[PhaseResult]:
    """Return the bare handler's and each shop read's results (``rounds`` of ``requests``)."""
    _require_rabbitmq(rabbit_url)
    # A private virtual host: task messages of other workers on the shared one would reach
    # this worker (a task's handler sending to a topic before this worker created it creates
    # it with the broker's default partitions).
    async with bench_vhost(rabbit_url) as url:
        return await _measure(broker, workdir, url, requests, concurrency, deadline, rounds)


async def _measure(broker: Any, workdir: Path, rabbit_url: str, requests: int,
                   concurrency: int, deadline: float, rounds: int) -> list[PhaseResult]:
    bare_port = free_port()
    bare = _start_bare(bare_port)
    worker = start_worker("bench-http", broker_env(broker), rabbit_url, workdir,
                          extra_env=UNLIMITED)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await _wait_ready(http, worker)
            await _wait_port(bare, bare_port, deadline)
            customer, order_id = await _customer_with_order(http, worker, deadline)
        say(f"http: servers ready; {requests:,} requests per endpoint, {concurrency} "
            f"connections")
        targets = [("bare aiohttp handler (GET /hello)", bare_port, BARE_PATH, {}, bare.pid),
                   ("shop GET /health (a view: no token, no table)", worker.web_port,
                    "/health", {}, _pid(worker)),
                   ("shop GET /api/users/me", worker.web_port, "/api/users/me", customer,
                    _pid(worker)),
                   ("shop GET /api/orders/{id} (keyed)", worker.web_port,
                    f"/api/orders/{order_id}", customer, _pid(worker))]
        for _, port, path, headers, _ in targets:
            await run_load(HOST, port, path, requests=min(WARM_UP, requests),
                           concurrency=concurrency, headers=headers)
        # Each round loads every endpoint in turn, so a drift of the machine's speed (the
        # bare handler alone swung 13,700-21,200 requests/s between runs here) reaches the
        # bare handler and the shop alike; the ratios are medians of each round's ratio.
        rounds_of: dict[str, list[Load]] = {name: [] for name, *_ in targets}
        for number in range(1, rounds + 1):
            for name, port, path, headers, pid in targets:
                load = await run_load(HOST, port, path, requests=requests,
                                      concurrency=concurrency, headers=headers,
                                      server_pid=pid, label=name)
                cpu = (f", server CPU {load.server_cpu_seconds / load.requests * 1e6:.0f} µs "
                       "a request" if load.server_cpu_seconds is not None and load.requests
                       else "")
                say(f"http: round {number}/{rounds}: {name}: {load.rate:,.0f} requests/s, "
                    f"p50 {load.ms(0.5)} ms, p99 {load.ms(0.99)} ms{cpu}")
                rounds_of[name].append(load)
    finally:
        await asyncio.gather(asyncio.to_thread(_stop, bare), asyncio.to_thread(worker.stop))
    return http_results(list(rounds_of.items()), concurrency)


def http_results(loads: list[tuple[str, list[Load]]], concurrency: int) -> list[PhaseResult]:
    """Return each endpoint's result over its rounds, the first endpoint being the bare one.

    The rate and the ratio to the bare handler are medians of the rounds' figures (the ratio
    of round ``i`` is the endpoint's rate in round ``i`` over the bare handler's); p50 and p99
    are over every request of every round.
    """
    bare = loads[0][1]
    results = []
    for name, rounds in loads:
        merged = merge_loads(rounds)
        ratios = [load.rate / base.rate for load, base in zip(rounds, bare, strict=True)
                  if base.rate]
        extra: dict[str, Any] = {
            "concurrency": concurrency, "p50_ms": merged.ms(0.5), "p99_ms": merged.ms(0.99),
            "rounds": len(rounds),
            "round_rates": [round(load.rate) for load in rounds],
            "median_rate": round(statistics.median(load.rate for load in rounds), 1),
            "ratio_to_bare_aiohttp": round(statistics.median(ratios), 3) if ratios else None,
            "client_cpu_seconds": round(merged.client_cpu_seconds, 2),
            "server_cpu_seconds": (round(merged.server_cpu_seconds, 2)
                                   if merged.server_cpu_seconds is not None else None)}
        results.append(PhaseResult(name, merged.requests, merged.seconds, extra=extra))
    return results


def merge_loads(loads: list[Load]) -> Load:
    """Return the loads as one: requests, seconds, CPU and latencies added up."""
    server = [load.server_cpu_seconds for load in loads]
    return Load(sum(load.requests for load in loads), sum(load.seconds for load in loads),
                [latency for load in loads for latency in load.latencies],
                sum(load.client_cpu_seconds for load in loads),
                None if None in server else sum(s for s in server if s is not None))


async def _customer_with_order(http: aiohttp.ClientSession, worker: Worker,
                               deadline: float) -> tuple[dict[str, str], str]:
    """Register and log in a customer, give them a confirmed order; return (headers, id)."""
    await _call(http, "POST", worker.url + "/api/products", 201, headers=ADMIN, json={
        "sku": SKU, "name": "HTTP bench", "category": "bench", "price_cents": 100,
        "initial_stock": 1_000})
    await _call(http, "POST", worker.url + "/api/users", 201,
                json={"email": EMAIL, "password": PASSWORD, "name": "HTTP bench"})
    tokens = await _call(http, "POST", worker.url + "/api/auth/login", 200,
                         json={"email": EMAIL, "password": PASSWORD})
    customer = {"Authorization": f"Bearer {tokens['access_token']}"}
    order_id = str((await _call(http, "POST", worker.url + "/api/orders", 201,
                                headers=customer, json={
                                    "items": [{"sku": SKU, "quantity": 1}],
                                    "payment_method": "pm_card_ok"}))["id"])
    while True:
        order = await _call(http, "GET", f"{worker.url}/api/orders/{order_id}?wait=5", None,
                            headers=customer)
        if order.get("status") == "confirmed":
            return customer, order_id
        _check_deadline(deadline, f"the bench order is {order.get('status')!r}, not confirmed")


async def _call(http: aiohttp.ClientSession, method: str, url: str, expect: int | None,
                **kwargs: Any) -> dict[str, Any]:
    async with http.request(method, url, **kwargs) as answer:
        body = await answer.json()
        if expect is not None and answer.status != expect:
            raise BenchError(f"{method} {url} answered {answer.status}: {body}")
        return dict(body)


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise BenchError(what)


async def _wait_port(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    while not port_open(HOST, port):
        if process.poll() is not None:
            raise BenchError(f"the bare aiohttp server exited with {process.returncode}")
        _check_deadline(deadline, "the bare aiohttp server did not start")
        await asyncio.sleep(0.1)


def _pid(worker: Worker) -> int | None:
    return worker.process.pid if worker.process is not None else None


def _start_bare(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.http_load", str(port)], cwd=ROOT,
                            start_new_session=True, preexec_fn=exit_with_parent)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
