"""One worker against two: the same events through the shop's agents, scaled out.

Each run has its own fresh Tansu broker (so the second run starts from an empty group and
topic) and N real workers (``faust -A app worker``) in one consumer group. Once every worker
answers ``/ready`` (the group has settled: the last worker's ready means its assignment came
in the same generation as the others'), the events are produced raw to the ``analytics``
topic, keyed by session over all its partitions, and the clock runs until every partition's
last session shows all its events (read through any worker: ``table_route`` sends a read to
the owner). Every session's count is then checked exact. The figure is the ratio of the two
rates (goal: two workers >= 1.7 x one, on a machine with a core per worker to spare).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.errors import BenchError
from bench.kafka_raw import new_producer, send_all
from bench.report import UNLIMITED, PhaseResult, say
from bench.shop_agent import (
    TOPIC,
    _last_session_per_partition,
    _require_rabbitmq,
    _table_total,
    _wait_applied,
    _wait_ready,
)
from scripts.devstack import Worker, broker_env, start_tansu, start_worker

__all__ = ["measure_scaling"]

#: Goal for two workers against one (issue 9).
GOAL = 1.7


async def measure_scaling(events: Sequence[tuple[str, bytes]], workdir: Path, rabbit_url: str,
                          deadline: float) -> list[PhaseResult]:
    """Return the rate of one worker and of two on ``events``, the second with the ratio."""
    _require_rabbitmq(rabbit_url)
    one = await _run(1, events, workdir, rabbit_url, deadline)
    say(f"scaling: 1 worker {one.rate:,.0f} events/s")
    two = await _run(2, events, workdir, rabbit_url, deadline)
    ratio = two.rate / one.rate if one.rate else 0.0
    two.extra["ratio_to_one_worker"] = round(ratio, 3)
    one.extra["ratio_to_one_worker"] = 1.0
    say(f"scaling: 2 workers {two.rate:,.0f} events/s = {ratio:.2f} x one (goal >= {GOAL})")
    return [one, two]


async def _run(count: int, events: Sequence[tuple[str, bytes]], workdir: Path,
               rabbit_url: str, deadline: float) -> PhaseResult:
    base = workdir / f"scaling-{count}"
    base.mkdir(parents=True, exist_ok=True)
    broker = start_tansu(log_path=base / "tansu.log")
    workers: list[Worker] = []
    try:
        spawned = time.monotonic()
        workers = [start_worker(f"w{n}", broker_env(broker), rabbit_url, base,
                                extra_env=UNLIMITED) for n in range(count)]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for worker in workers:
                await _wait_ready(http, worker)
            startup = time.monotonic() - spawned
            producer = new_producer(broker.bootstrap)
            await producer.start()
            try:
                started = time.perf_counter()
                sent = await send_all(producer, TOPIC, events)
                partitions = sorted(await producer.partitions_for(TOPIC))
            finally:
                await producer.stop()
            await _wait_applied(http, workers[0], broker, _last_session_per_partition(events, sent),
                                len(events), deadline)
            seconds = time.perf_counter() - started
            total = await _table_total(http, workers[-1], {key for key, _ in events})
    finally:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        broker.stop()
    if total != len(events):
        raise BenchError(f"{count} worker(s): the session-activity table holds {total:,} "
                         f"events, not {len(events):,}; see the logs under {base}")
    return PhaseResult(f"{count} worker{'s' if count > 1 else ''}: analytics events "
                       f"({len(partitions)} partitions)", len(events), seconds,
                       startup_seconds=startup,
                       extra={"phase": "scaling", "workers": count, "partitions": len(partitions),
                              "table_total": total})
