"""Analytics windows stay exact across a crash and rebalances, and every worker answers
them completely: of two workers counting tracked events, one is killed (SIGKILL) mid-stream,
the other takes its partitions over (redelivered events are not counted twice, none is
lost), and the killed one, restarted on its data dir, answers the same exact counts.

The events come as the tracking collector writes them (packs of many events of one
partition, agents/tracking.py) and, in between, one a message, as other producers may."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter

import aiohttp
import pytest

from bench.analytics import COUNTER_OF, PACK, make_tracking_events, tracking_packs
from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import produce
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration

EVENTS = 60_000  # half before the kill, half after
SINGLE = 6_000  # of which one a message, three after each pack


def messages_of(events: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Return ``events`` as packs with single events in between (keyed messages)."""
    singles, packs = events[:SINGLE], tracking_packs(events[SINGLE:], PACK)
    messages = []
    for n, pack in enumerate(packs):
        messages.append(pack)
        messages.extend(singles[3 * n:3 * n + 3])
    messages.extend(singles[3 * len(packs):])
    return messages


async def counted(http: aiohttp.ClientSession, url: str) -> Counter[str]:
    """Return the merged windows' counters (0 while the worker does not answer)."""
    try:
        async with http.get(f"{url}/api/analytics/tables/analytics-windows",
                            headers=ADMIN) as response:
            if response.status != 200:
                return Counter()
            rows = (await response.json())["rows"]
    except (aiohttp.ClientError, TimeoutError):
        return Counter()
    total: Counter[str] = Counter()
    for row in rows:
        for name in COUNTER_OF.values():
            total[name] += row[name]
    return total


async def wait_exact(http: aiohttp.ClientSession, url: str, expected: Counter[str]) -> None:
    """Wait until the worker at ``url`` counts ``expected``; fail on any count above it."""
    deadline = time.monotonic() + 180
    while (now := await counted(http, url)) != expected:
        assert time.monotonic() < deadline, (url, now, expected)
        assert all(now[k] <= expected[k] for k in expected), ("counted twice", now)
        await asyncio.sleep(0.2)


async def test_counts_are_exact_across_a_crash_and_on_every_worker(
    workers: WorkerFactory,
) -> None:
    # The default session timeout (6 s): shorter ones make a loaded 2-core machine rebalance
    # without end. One worker after the other: two joining at once rebalance twice.
    survivor = workers.start("w1", SHOP_COMMIT_INTERVAL="0.5")
    await asyncio.to_thread(survivor.wait_ready, 120.0)
    victim = workers.start("w2", SHOP_COMMIT_INTERVAL="0.5")
    await asyncio.to_thread(victim.wait_ready, 120.0)
    events = make_tracking_events(EVENTS, seed=11)
    expected = Counter(COUNTER_OF[json.loads(value)["type"]] for _, value in events)
    messages = messages_of(events)
    half = len(messages) // 2
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        # The first half, then a kill right after the victim's first batch (written, most
        # likely not committed yet), then the second half, during the failover.
        await produce(workers.broker.bootstrap, "analytics", messages[:half])
        await kill_while_working(http, victim)
        await produce(workers.broker.bootstrap, "analytics", messages[half:])

        await wait_exact(http, survivor.url, expected)  # after the rebalance, on w1 alone
        await asyncio.to_thread(workers.restart(victim).wait_ready, 120.0)
        await wait_exact(http, victim.url, expected)  # the restarted worker, complete too
        await asyncio.sleep(2.0)  # a late double count would show by now
        assert await counted(http, survivor.url) == expected
        assert await counted(http, victim.url) == expected


async def kill_while_working(http: aiohttp.ClientSession, victim: Worker) -> float:
    """Kill ``victim`` (SIGKILL) as soon as it has taken a batch (its rows are written; the
    offsets are committed within half a second); return how many events it had taken."""
    deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
    while not (taken := await events_taken(http, victim.url)):
        assert time.monotonic() < deadline, "the victim took nothing"
        await asyncio.sleep(0.02)
    victim.kill()
    return taken


async def events_taken(http: aiohttp.ClientSession, url: str) -> float:
    """Return the events the worker's analytics agent has taken (0 if it does not answer)."""
    try:
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0.0
    found = re.search(r"^shop_analytics_window_events_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
