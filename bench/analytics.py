"""Tracking events/s through the shop's analytics windows, against raw aiokafka, in one run.

Baseline: the raw aiokafka consumer + ``json.loads`` + a count per key (bench/kafka_raw.py)
reads the same events, one a message, from a topic of the same partitions. Then a real
ShopStream worker (every agent of the app, the analytics ones with all their windowed RocksDB
tables and the merge) gets the events on its ``analytics`` topic as the tracking collector
writes them (agents/tracking.py): in packs of ``--pack`` events of one partition (PACK: what
the collector's 20 ms linger gathers a partition at 10,000 events/s over 8 partitions;
``--pack 1`` is one event a message, as other producers may write). The clock starts when
the worker is ready (the events wait on the topic) and stops when the merged windows
(``GET /api/analytics/tables/analytics-windows``) count every event. The counts are then
checked exactly, kind by kind. For reference, the raw consumer also reads the packs.

``python -m bench.analytics [--events N]`` runs this phase alone on its own Tansu broker;
``python -m bench`` runs it with the other phases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from agents.tracking import pack_by_partition
from bench.errors import BenchError
from bench.kafka_raw import create_topic, measure_consumer, measure_producer
from bench.report import ADMIN, UNLIMITED, PhaseResult, say
from bench.shop_agent import _check_alive, _require_rabbitmq, _wait_ready
from models.analytics import pack_tracked
from scripts.devstack import Broker, broker_env, start_tansu, start_worker

__all__ = ["make_tracking_events", "measure_analytics", "measure_analytics_alone",
           "print_analytics_table"]

RAW_TOPIC = "bench-raw-tracking"
TOPIC = "analytics"
PARTITIONS = 8
SESSIONS = 2_000
SKUS = 500
POLL_S = 0.1
RAW_PACKS_TOPIC = "bench-raw-tracking-packs"
#: Events a pack: a partition's share of 10,000 events/s over 8 partitions in a 20 ms linger.
PACK = 25
#: Counter of the merged windows for each tracking type.
COUNTER_OF = {"product_view": "product_views", "add_to_cart": "add_to_carts",
              "remove_from_cart": "removes", "page_view": "page_views", "search": "searches"}
KINDS = ("product_view", "product_view", "product_view", "page_view", "add_to_cart", "search",
         "remove_from_cart")


def make_tracking_events(count: int, *, seed: int = 7,
                         signed_in: float = 0.0) -> list[tuple[str, bytes]]:
    """Return ``count`` (session, JSON) tracking events of the last minute.

    A ``signed_in`` share carries a user id (the recommendations agents then work on those
    too; the default measures the analytics agents alone).
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for i in range(count):
        session = f"sess-{rng.randrange(SESSIONS):05d}"
        kind = KINDS[rng.randrange(len(KINDS))]
        event: dict[str, object] = {
            "type": kind, "event_id": f"{rng.getrandbits(64):016x}",
            "occurred_at": (now - timedelta(seconds=rng.random() * 60)).isoformat(),
            "correlation_id": f"{i:08x}", "schema_version": 1, "session_id": session}
        if rng.random() < signed_in:
            event["user_id"] = f"user-{rng.randrange(SESSIONS // 2)}"
        if kind == "search":
            event["query"] = "running shoes"
        elif kind != "page_view":
            event["sku"] = f"SKU-{rng.randrange(SKUS):04d}"
        events.append((session, json.dumps(event, separators=(",", ":")).encode()))
    return events


def expected_counts(events: list[tuple[str, bytes]]) -> Counter[str]:
    """Return how many events of each counter the windows must hold."""
    return Counter(COUNTER_OF[json.loads(value)["type"]] for _, value in events)


async def _counted(http: aiohttp.ClientSession, url: str) -> Counter[str]:
    async with http.get(f"{url}/api/analytics/tables/analytics-windows",
                        headers=ADMIN) as response:
        if response.status != 200:
            raise BenchError(f"analytics-windows answered {response.status}: "
                             f"{(await response.text())[:300]}")
        rows = (await response.json())["rows"]
    counted: Counter[str] = Counter()
    for row in rows:
        for name in (*COUNTER_OF.values(), "late"):
            counted[name] += row.get(name, 0)
    return counted


async def measure_analytics(broker: Broker, workdir: Path, rabbit_url: str, count: int,
                            deadline: float, pack: int = PACK) -> list[PhaseResult]:
    """Return the raw consumer's and the analytics windows' results for ``count`` events."""
    _require_rabbitmq(rabbit_url)
    events = make_tracking_events(count)
    expected = expected_counts(events)
    await create_topic(broker.bootstrap, RAW_TOPIC, PARTITIONS)
    await measure_producer(broker.bootstrap, RAW_TOPIC, events)
    raw = await measure_consumer(broker.bootstrap, RAW_TOPIC, count)
    raw.name = "raw aiokafka consumer + json.loads (tracking events, one a message)"
    say(f"analytics: raw consumer + decode {raw.rate:,.0f} events/s")
    messages = tracking_packs(events, pack)
    await create_topic(broker.bootstrap, RAW_PACKS_TOPIC, PARTITIONS)
    await measure_producer(broker.bootstrap, RAW_PACKS_TOPIC, messages)
    raw_packs = await measure_consumer(broker.bootstrap, RAW_PACKS_TOPIC, len(messages))
    raw_packs = PhaseResult(f"raw aiokafka consumer + json.loads (the same in packs of {pack})",
                            count, raw_packs.seconds, extra={"pack": pack})

    # The events wait on the topic before the worker starts: the clock measures processing
    # (from the worker's readiness to the last event counted), not the producer.
    await create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    produced = (await measure_producer(broker.bootstrap, TOPIC, messages)).seconds
    spawned = time.monotonic()
    worker = start_worker("bench-analytics", broker_env(broker), rabbit_url, workdir,
                          extra_env={**UNLIMITED, "SHOP_TOPIC_PARTITIONS": str(PARTITIONS)})
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await _wait_ready(http, worker)
            started = time.perf_counter()
            startup = time.monotonic() - spawned
            say(f"analytics: {count:,} events waiting on {TOPIC!r}; worker ready in "
                f"{startup:.1f} s")
            say("analytics: waiting for the windows to count them all")
            total = sum(expected.values())
            next_progress = time.monotonic() + 5
            while True:
                _check_alive(worker)
                counted = await _counted(http, worker.url)
                done = sum(counted.values())
                if done >= total:
                    seconds = time.perf_counter() - started
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"the windows counted {done:,} of {total:,} events in "
                                     f"time; see {worker.log_path}")
                if time.monotonic() > next_progress:
                    say(f"analytics: {done:,} of {total:,} counted")
                    next_progress = time.monotonic() + 5
                await asyncio.sleep(POLL_S)
            await asyncio.sleep(2.0)  # anything counted twice would show by now
            final = await _counted(http, worker.url)
            taken, busy = await _agent_work(http, worker.url)
    finally:
        await asyncio.to_thread(worker.stop)
    wanted = {name: expected.get(name, 0) for name in (*COUNTER_OF.values(), "late")}
    got = {name: final.get(name, 0) for name in wanted}
    if got != wanted:
        raise BenchError(f"the windows' counts are not exact: {got} != {wanted}")
    result = PhaseResult(f"shop analytics windows, end to end (real worker, packs of {pack})",
                         count, seconds, startup_seconds=startup,
                         extra={"partitions": PARTITIONS, "produce_seconds": round(produced, 3),
                                "pack": pack, "messages": len(messages),
                                "counts": got, "exact": True,
                                "ratio_to_raw_consumer": round((count / seconds) / raw.rate, 4),
                                "ratio_to_raw_consumer_of_packs":
                                    round((count / seconds) / raw_packs.rate, 4)})
    agent = PhaseResult("analytics.tracked agent's own time (sessions, windows, forwards)", taken,
                        busy, extra={"ratio_to_raw_consumer":
                                     round((taken / busy) / raw.rate, 4) if busy else 0.0})
    return [raw, result, agent, raw_packs]


def tracking_packs(events: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """Return ``events`` as the tracking collector sends them: keyed packs of ``size``."""
    if size <= 1:
        return events
    at = datetime.now(UTC).isoformat()
    return [(key, pack_tracked(f"pack-{n:08x}", pack, occurred_at=at))
            for n, (key, pack) in enumerate(pack_by_partition(events, PARTITIONS, size))]


async def _agent_work(http: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """Return the events the windows agent took and the seconds it spent (its /metrics)."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()

    def sample(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return (int(sample("shop_analytics_window_events_total")),
            sample("shop_analytics_window_busy_seconds_total"))


async def measure_analytics_alone(workdir: Path, rabbit_url: str, count: int,
                                  deadline: float, pack: int = PACK) -> list[PhaseResult]:
    """Run :func:`measure_analytics` on a fresh broker of its own; tag the results."""
    broker = start_tansu(log_path=workdir / "tansu-analytics.log")
    try:
        results = await measure_analytics(broker, workdir, rabbit_url, count, deadline, pack)
    finally:
        broker.stop()
    for result in results:
        result.extra["phase"] = "analytics"
    return results


def print_analytics_table(results: list[PhaseResult]) -> None:
    """Print the analytics phase: rates and ratios to its own raw consumer run."""
    if not results:
        return
    raw = results[0]
    rows = [("analytics windows", "events", "seconds", "events/s", "x raw consume+decode")]
    for r in results:
        rows.append((r.name, f"{r.messages:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}",
                     f"{r.rate / raw.rate:.4f}" if raw.rate else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    counts = results[1].extra.get("counts") if len(results) > 1 else None
    print(f"(goal >= 0.1 x raw, one event a message; counts exact afterwards: {counts})")


def main(argv: list[str] | None = None) -> int:
    """Run the analytics phase alone on its own broker; print the ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pack", type=int, default=PACK,
                        help="events a message, as the tracking collector packs them "
                             f"(default {PACK}; 1: one event a message)")
    parser.add_argument("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--keep", action="store_true", help="keep the broker and worker logs")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="shopstream-bench-analytics-"))
    try:
        results = asyncio.run(measure_analytics_alone(
            workdir, args.rabbit_url, args.events, time.monotonic() + 120 + args.events / 200,
            args.pack))
    except BenchError as exc:
        say(f"error: {exc}; logs in {workdir}")
        return 1
    raw, windows, agent, _ = results
    print_analytics_table(results)
    say(f"raw consumer + decode: {raw.rate:,.0f} events/s; analytics end to end: "
        f"{windows.rate:,.0f} events/s = {windows.extra['ratio_to_raw_consumer']} x raw "
        f"({windows.extra['ratio_to_raw_consumer_of_packs']} x raw reading the same packs); "
        f"the analytics.tracked agent alone: {agent.rate:,.0f} events/s of its own time = "
        f"{agent.extra['ratio_to_raw_consumer']} x raw; counts exact: {windows.extra['counts']}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"logs kept in {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
