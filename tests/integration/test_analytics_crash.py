"""Analytics windows stay exact across a crash: a worker killed (SIGKILL) while it counts
tracked events is restarted on its data dir; the redelivered events are not counted twice
and none is lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest

from bench.analytics import COUNTER_OF, make_tracking_events
from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import produce
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration

EVENTS = 2500


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


async def test_counts_are_exact_after_a_crash_mid_stream(workers: WorkerFactory) -> None:
    worker = workers.start("w1", SHOP_COMMIT_INTERVAL="0.5", SHOP_SESSION_TIMEOUT="3",
                           SHOP_HEARTBEAT_INTERVAL="1")
    await asyncio.to_thread(worker.wait_ready)
    events = make_tracking_events(EVENTS, seed=11)
    expected = Counter(COUNTER_OF[json.loads(value)["type"]] for _, value in events)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await produce(workers.broker.bootstrap, "analytics", events)
        deadline = time.monotonic() + 30
        while sum((await counted(http, worker.url)).values()) < EVENTS // 10:
            assert time.monotonic() < deadline, "nothing counted"
            await asyncio.sleep(0.05)
        partly = sum((await counted(http, worker.url)).values())
        worker.kill()  # mid-stream: some batches written, not all committed

        await asyncio.to_thread(workers.restart(worker).wait_ready)
        deadline = time.monotonic() + 60
        while (now := await counted(http, worker.url)) != expected:
            assert time.monotonic() < deadline, (now, expected)
            assert all(now[k] <= expected[k] for k in expected), ("counted twice", now)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # a late double count would show by now
        assert await counted(http, worker.url) == expected
    assert partly < EVENTS, "the crash came after everything was counted; retry bigger"
