"""The shop's own analytics agent in a real ShopStream worker: events/s into its table.

The worker (``faust -A app worker`` via ``scripts.devstack.start_worker``) creates the
``analytics`` topic at start; once ``/ready`` answers 200 the events are produced raw to it,
keyed by session. The clock starts at the first send and stops when, for every partition, the
session of the partition's last event shows all its events in
``GET /api/analytics/sessions/{id}`` (a partition is processed in order, so its last event
applied means all of it is). Then every session's total is checked against what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiokafka.structs import RecordMetadata

from bench.errors import BenchError
from bench.kafka_raw import new_producer, send_all
from bench.offsets import committed_total
from bench.report import ADMIN, UNLIMITED, PhaseResult, say
from scripts.devstack import Broker, Worker, broker_env, port_open, start_worker

__all__ = ["measure_shop_agent"]

TOPIC = "analytics"
GROUP = "shopstream"
POLL_S = 0.2
READY_TIMEOUT_S = 120.0
PROGRESS_EVERY_S = 5.0
#: How long one session read may keep answering 503 (a rebalance or a restore) before the
#: bench gives up.
UNAVAILABLE_TIMEOUT_S = 60.0


async def measure_shop_agent(broker: Broker, events: Sequence[tuple[str, bytes]],
                             workdir: Path, rabbit_url: str, deadline: float) -> PhaseResult:
    """Time the shop's worker applying ``events`` to its table, done by ``deadline``."""
    _require_rabbitmq(rabbit_url)
    spawned = time.monotonic()
    worker = start_worker("bench-shop", broker_env(broker), rabbit_url, workdir,
                          extra_env=UNLIMITED)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _wait_ready(http, worker)
            startup = time.monotonic() - spawned
            say(f"shop agent: worker ready in {startup:.1f} s; producing {len(events):,} "
                f"events to {TOPIC!r}")
            producer = new_producer(broker.bootstrap)
            await producer.start()
            try:
                started = time.perf_counter()
                sent = await send_all(producer, TOPIC, events)
                produced_s = time.perf_counter() - started
                partitions = sorted(await producer.partitions_for(TOPIC))
            finally:
                await producer.stop()
            say(f"shop agent: produced in {produced_s:.2f} s; waiting until all are applied")
            await _wait_applied(http, worker, broker, _last_session_per_partition(events, sent),
                                len(events), deadline)
            seconds = time.perf_counter() - started
            total = await _table_total(http, worker, {key for key, _ in events})
        committed = await committed_total(broker.bootstrap, GROUP, TOPIC, partitions)
    finally:
        await asyncio.to_thread(worker.stop)
    if total != len(events):
        raise BenchError(f"the session-activity table holds {total:,} events, not "
                         f"{len(events):,}; see {worker.log_path}")
    return PhaseResult(
        "shop agent (app: analytics -> session-activity)",
        len(events),
        seconds,
        startup_seconds=startup,
        extra={"partitions": len(partitions), "produce_seconds": round(produced_s, 3),
               "table_total": total, "committed_offsets_total": committed},
    )


def _require_rabbitmq(url: str) -> None:
    """Fail early, saying what to do, when the worker's RabbitMQ is not there."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if not port_open(host, port):
        raise BenchError(f"RabbitMQ is not reachable at {host}:{port}: the shop's worker needs "
                         "it (start it, e.g. 'make run' does, or pass --rabbit-url)")


async def _wait_ready(http: aiohttp.ClientSession, worker: Worker) -> None:
    """Wait until the worker's ``/ready`` answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        _check_alive(worker)
        try:
            async with http.get(worker.url + "/ready") as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the shop worker was not ready in {READY_TIMEOUT_S:.0f} s; "
                             f"see {worker.log_path}")
        await asyncio.sleep(0.1)


def _last_session_per_partition(
    events: Sequence[tuple[str, bytes]], sent: Sequence[RecordMetadata]
) -> dict[int, tuple[str, int]]:
    """Return partition -> (session of its last event, events that session was sent)."""
    per_session = Counter(key for key, _ in events)
    last: dict[int, tuple[int, str]] = {}
    for (key, _), meta in zip(events, sent, strict=True):
        if meta.partition not in last or meta.offset > last[meta.partition][0]:
            last[meta.partition] = (meta.offset, key)
    return {p: (key, per_session[key]) for p, (_, key) in last.items()}


async def _wait_applied(http: aiohttp.ClientSession, worker: Worker, broker: Broker,
                        sentinels: dict[int, tuple[str, int]], count: int,
                        deadline: float) -> None:
    """Wait until every partition's last session shows all its events (progress every 5 s)."""
    pending = dict(sentinels)
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while pending:
        _check_alive(worker)
        for partition, (session, expected) in list(pending.items()):
            if await _session_events(http, worker, session) >= expected:
                del pending[partition]
        if not pending:
            return
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{len(pending)} of {len(sentinels)} partitions not applied in "
                             f"time; see {worker.log_path}")
        if now > next_progress:
            committed = await committed_total(broker.bootstrap, GROUP, TOPIC, list(sentinels))
            say(f"shop agent: ~{committed:,} of {count:,} committed, "
                f"{len(sentinels) - len(pending)}/{len(sentinels)} partitions done")
            next_progress = now + PROGRESS_EVERY_S
        await asyncio.sleep(POLL_S)


async def _session_events(http: aiohttp.ClientSession, worker: Worker, session: str) -> int:
    """Return the events the worker's table holds for ``session`` (0 if it has no row).

    A 503 means the worker is restoring or taking over partitions (a rebalance can follow
    ``/ready``), so the row may exist: it is asked again after its ``Retry-After``.
    """
    deadline = time.monotonic() + UNAVAILABLE_TIMEOUT_S
    while True:
        async with http.get(f"{worker.url}/api/analytics/sessions/{session}",
                            headers=ADMIN) as response:
            if response.status == 404:
                return 0
            if response.status == 200:
                return int((await response.json())["events"])
            body = (await response.text())[:300]
            if response.status != 503 or time.monotonic() > deadline:
                raise BenchError(f"GET session {session} answered {response.status}: {body}")
            wait = float(response.headers.get("Retry-After", "1"))
        _check_alive(worker)
        await asyncio.sleep(min(wait, 1.0))


async def _table_total(http: aiohttp.ClientSession, worker: Worker, sessions: set[str]) -> int:
    """Return the events of all ``sessions`` in the worker's table, 8 requests at a time."""
    limit = asyncio.Semaphore(8)

    async def one(session: str) -> int:
        async with limit:
            return await _session_events(http, worker, session)

    return sum(await asyncio.gather(*(one(s) for s in sorted(sessions))))


def _check_alive(worker: Worker) -> None:
    """Fail if the worker process has exited."""
    if worker.process is not None and worker.process.poll() is not None:
        raise BenchError(f"the shop worker exited with {worker.process.returncode}; "
                         f"see {worker.log_path}")
