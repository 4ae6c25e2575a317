"""Notifications on a real worker: latency from the source event to 500 open SSE streams, and
events/s through the notification agents.

One worker; STREAMS users each hold ``GET /api/notifications/stream`` open (signed-in by a
token, no registration needed). Source events are ``order_shipped`` notices put raw on the
``orders`` topic (as the saga writes them), each for one of those users, with the order id
naming the notice. A notice travels orders -> notifications.sources -> ``notifications`` ->
notifications.inbox (the user's row) -> the user's stream; the latency is from the send to the
event read on the stream (one clock: this process). Latency is measured at a steady rate
(``rate``/s); throughput by sending ``count`` notices at once and timing until every one has
arrived on its stream. The bare Faust agent's rate of the same run is the yardstick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.errors import BenchError
from bench.kafka_raw import new_producer
from bench.report import UNLIMITED, PhaseResult, say
from config.settings import DEV_JWT_SECRET
from scripts.devstack import broker_env, start_tansu, start_worker
from web.tokens import issue_access_token

__all__ = ["STREAMS", "measure_notifications"]

STREAMS = 500
TOPIC = "orders"
READY_TIMEOUT_S = 120.0


def notify(user_id: str, order_id: str) -> bytes:
    """Return a decided ``Notify`` for ``user_id`` (what the sources agent forwards)."""
    return json.dumps({
        "type": "notify", "event_id": f"nt-{order_id}",
        "occurred_at": "2026-11-25T12:00:00+00:00", "correlation_id": order_id,
        "schema_version": 1, "notification_id": f"nt-{order_id}", "user_id": user_id,
        "kind": "order_shipped", "title": "Order shipped", "body": "On its way.",
        "link": f"/orders/{order_id}", "created_at": "2026-11-25T12:00:00+00:00"}).encode()


def notice(user_id: str, order_id: str) -> bytes:
    """Return an ``order_shipped`` notice for ``user_id`` (the saga's shape)."""
    return json.dumps({
        "type": "order_shipped", "event_id": f"ev-{order_id}",
        "occurred_at": "2026-11-25T12:00:00+00:00", "correlation_id": order_id,
        "schema_version": 1, "order_id": order_id, "user_id": user_id, "status": "shipped",
        "total_cents": 1000, "reason": ""}).encode()


class Streams:
    """STREAMS open SSE streams; the arrival time of every notice, by order id."""

    def __init__(self, http: aiohttp.ClientSession, url: str, users: list[str]) -> None:
        self.http, self.url, self.users = http, url, users
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.open = 0

    async def start(self) -> None:
        """Open every stream (and wait until all answered 200)."""
        opened = [asyncio.get_running_loop().create_future() for _ in self.users]
        self.tasks = [asyncio.create_task(self._read(user, done))
                      for user, done in zip(self.users, opened, strict=True)]
        await asyncio.gather(*opened)

    async def _read(self, user: str, opened: asyncio.Future[None]) -> None:
        token = issue_access_token(user, ["customer"], secret=DEV_JWT_SECRET, ttl=3600)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        async with self.http.get(self.url + "/api/notifications/stream?wait=3600",
                                 headers=headers) as response:
            if response.status != 200:
                opened.set_exception(BenchError(f"stream of {user}: {response.status}"))
                return
            self.open += 1
            opened.set_result(None)
            async for raw in response.content:
                if raw.startswith(b"data: "):
                    link = json.loads(raw[6:])["link"]
                    self.arrived[link.rsplit("/", 1)[1]] = time.perf_counter()
                    self.changed.set()

    async def wait_for(self, order_ids: list[str], deadline: float) -> None:
        """Wait until every one of ``order_ids`` has arrived."""
        while any(order_id not in self.arrived for order_id in order_ids):
            if time.monotonic() > deadline:
                missing = sum(1 for o in order_ids if o not in self.arrived)
                raise BenchError(f"{missing} of {len(order_ids)} notices never reached a stream")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 1.0)

    async def close(self) -> None:
        """Close every stream."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def measure_notifications(workdir: Path, rabbit_url: str, *, count: int, rate: float,
                                latency_seconds: float, deadline: float,
                                bare_rate: float | None = None) -> list[PhaseResult]:
    """Measure the notification latency with STREAMS streams and the notices/s end to end.

    The phase has a broker of its own: a worker of the shop's consumer group joining right
    after the earlier phases' workers left can wait on the broker's stale group for minutes.
    """
    broker = start_tansu(log_path=workdir / "tansu-notify.log")
    try:
        return await _measure(broker.bootstrap, broker_env(broker), workdir, rabbit_url,
                              count=count, rate=rate, latency_seconds=latency_seconds,
                              deadline=deadline, bare_rate=bare_rate)
    finally:
        broker.stop()


async def _measure(bootstrap: str, kafka_env: dict[str, str], workdir: Path, rabbit_url: str,
                   *, count: int, rate: float, latency_seconds: float, deadline: float,
                   bare_rate: float | None) -> list[PhaseResult]:
    """Start the worker and the streams on the broker at ``bootstrap``; measure both."""
    spawned = time.monotonic()
    worker = start_worker("bench-notify", kafka_env, rabbit_url, workdir, extra_env=UNLIMITED)
    users = [f"bench-user-{i}" for i in range(STREAMS)]
    try:
        await asyncio.to_thread(worker.wait_ready, READY_TIMEOUT_S)
        startup = time.monotonic() - spawned
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=None)) as http:
            streams = Streams(http, worker.url, users)
            await streams.start()
            say(f"notifications: worker ready in {startup:.1f} s, {streams.open} streams open")
            producer = new_producer(bootstrap)
            await producer.start()
            try:
                latency = await _steady(producer, streams, users, rate, latency_seconds,
                                        deadline)
                throughput = await _burst(producer, streams, users, count, deadline)
                inbox = await _burst(producer, streams, users, count, deadline, direct=True)
            finally:
                await producer.stop()
                await streams.close()
    finally:
        await asyncio.to_thread(worker.stop)
    latency.startup_seconds = throughput.startup_seconds = inbox.startup_seconds = startup
    for result in (throughput, inbox):
        if bare_rate:
            result.extra["ratio_to_bare_faust_agent"] = round(result.rate / bare_rate, 3)
    return [latency, throughput, inbox]


async def _steady(producer: AIOKafkaProducer, streams: Streams, users: list[str], rate: float,
                  seconds: float, deadline: float) -> PhaseResult:
    """Send notices at ``rate``/s for ``seconds``; return the latency percentiles."""
    sent: dict[str, float] = {}
    total = max(1, int(rate * seconds))
    started = time.perf_counter()
    for n in range(total):
        order_id = f"lat{n}"
        due = started + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent[order_id] = time.perf_counter()
        await producer.send(TOPIC, notice(users[n % len(users)], order_id),
                            key=order_id.encode())
    await streams.wait_for(list(sent), deadline)
    ms = sorted((streams.arrived[o] - at) * 1000 for o, at in sent.items())
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    say(f"notifications: {total:,} notices at {rate:,.0f}/s to {len(users)} streams: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return PhaseResult("notification latency (source event -> SSE, 500 streams)", total,
                       time.perf_counter() - started,
                       extra={"rate": rate, "streams": len(users), "p50_ms": round(p50, 1),
                              "p99_ms": round(p99, 1), "max_ms": round(ms[-1], 1)})


async def _burst(producer: AIOKafkaProducer, streams: Streams, users: list[str], count: int,
                 deadline: float, *, direct: bool = False) -> PhaseResult:
    """Send ``count`` notices at once; return the notices/s until all reached their streams.

    ``direct``: decided notifications straight to the notifications topic (the inbox agent
    alone), else order notices to the orders topic (every agent of that topic, both hops).
    """
    prefix = "direct" if direct else "burst"
    order_ids = [f"{prefix}{n}" for n in range(count)]
    started = time.perf_counter()
    for n, order_id in enumerate(order_ids):
        user = users[n % len(users)]
        if direct:
            await producer.send("notifications", notify(user, order_id), key=user.encode())
        else:
            await producer.send(TOPIC, notice(user, order_id), key=order_id.encode())
    await streams.wait_for(order_ids, deadline)
    seconds = max(streams.arrived[o] for o in order_ids) - started
    path = "the inbox agent" if direct else "the orders topic's agents and both hops"
    say(f"notifications: {count:,} notices through {path} to the streams in {seconds:.2f} s "
        f"({count / seconds:,.0f}/s)")
    name = ("notification inbox agent (notifications -> row -> SSE)" if direct
            else "notification pipeline (orders -> sources -> row -> SSE)")
    return PhaseResult(name, count, seconds)
