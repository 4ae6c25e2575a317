"""Analytics windows stay exact across a crash and rebalances, and every worker answers
them completely: of two workers counting tracked events, one is killed (SIGKILL) mid-stream,
the other takes its partitions over (redelivered events are not counted twice, none is
lost), and the killed one, restarted on its data dir, answers the same exact counts: every
minute window's every counter, as the events make them. The victim commits rarely and dies
only once it has written rows, so the kill always hits uncommitted work: the test asserts
that the survivor took partitions over and that its guard skipped replayed events.

The events come as the tracking collector writes them (packs of many events of one
partition, agents/tracking.py) and, in between, one a message, as other producers may."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime

import aiohttp
import pytest

from bench.analytics import COUNTER_OF, PACK, make_tracking_events, tracking_packs
from models.analytics import MINUTE, iso
from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import produce
from tests.integration.metrics import (
    VICTIM_COMMIT_INTERVAL,
    WRITES_OUT_S,
    Takeover,
    kill_once_working,
    sample,
)
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration

EVENTS = 60_000  # half before the kill, half after
SINGLE = 6_000  # of which one a message, three after each pack
#: The counters compared in every window: each tracking type's, and late (none expected).
COUNTERS = (*COUNTER_OF.values(), "late")


def messages_of(events: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Return ``events`` as packs with single events in between (keyed messages)."""
    singles, packs = events[:SINGLE], tracking_packs(events[SINGLE:], PACK)
    messages = []
    for n, pack in enumerate(packs):
        messages.append(pack)
        messages.extend(singles[3 * n:3 * n + 3])
    messages.extend(singles[3 * len(packs):])
    return messages


WindowCounts = dict[str, dict[str, int]]


def expected_windows(events: list[tuple[str, bytes]]) -> WindowCounts:
    """Return every minute window's counters ``events`` make (by window start, ISO 8601);
    none is late (the events are a minute old at most, far inside the grace period)."""
    windows: dict[str, Counter[str]] = {}
    for _, value in events:
        data = json.loads(value)
        at = datetime.fromisoformat(data["occurred_at"]).timestamp()
        start = iso(int(at // MINUTE) * MINUTE)
        windows.setdefault(start, Counter())[COUNTER_OF[data["type"]]] += 1
    return {start: {name: counts[name] for name in COUNTERS} for start, counts in windows.items()}


async def counted(http: aiohttp.ClientSession, url: str) -> WindowCounts:
    """Return the merged windows' counters by window start ({} while the worker does not
    answer)."""
    try:
        async with http.get(f"{url}/api/analytics/tables/analytics-windows",
                            headers=ADMIN) as response:
            if response.status != 200:
                return {}
            rows = (await response.json())["rows"]
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {row["window_start"]: {name: row[name] for name in COUNTERS} for row in rows}


def over(now: WindowCounts, expected: WindowCounts) -> dict[str, dict[str, int]]:
    """Return the counters of ``now`` above ``expected`` (a double count), by window."""
    found = {}
    for start, counts in now.items():
        wanted = expected.get(start, {})
        above = {name: n for name, n in counts.items() if n > wanted.get(name, 0)}
        if above:
            found[start] = above
    return found


async def wait_exact(http: aiohttp.ClientSession, url: str, expected: WindowCounts) -> None:
    """Wait until the worker at ``url`` counts ``expected``, window by window and counter by
    counter; fail on any count above it."""
    deadline = time.monotonic() + 180
    while (now := await counted(http, url)) != expected:
        assert time.monotonic() < deadline, (url, now, expected)
        assert not over(now, expected), ("counted twice", over(now, expected))
        await asyncio.sleep(0.2)


async def test_counts_are_exact_across_a_crash_and_on_every_worker(
    workers: WorkerFactory,
) -> None:
    # The default session timeout (6 s): shorter ones make a loaded 2-core machine rebalance
    # without end. One worker after the other: two joining at once rebalance twice. The
    # victim commits rarely, so that everything it takes before the kill is uncommitted.
    survivor = workers.start("w1", SHOP_COMMIT_INTERVAL="0.5")
    await asyncio.to_thread(survivor.wait_ready, 120.0)
    victim = workers.start("w2", SHOP_COMMIT_INTERVAL=VICTIM_COMMIT_INTERVAL)
    await asyncio.to_thread(victim.wait_ready, 120.0)
    events = make_tracking_events(EVENTS, seed=11)
    expected = expected_windows(events)
    print(f"expected: {expected}")
    messages = messages_of(events)
    half = len(messages) // 2
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        on_survivor = await Takeover.read(http, survivor.url, "analytics")
        # The first half, then a kill once the victim has written rows of it (none of it
        # committed), then the second half, during the failover.
        await produce(workers.broker.bootstrap, "analytics", messages[:half])
        taken = await kill_once_working(http, victim, events_taken)
        print(f"killed the victim {WRITES_OUT_S} s after it had taken {taken:.0f} events "
              "(none committed)")
        await produce(workers.broker.bootstrap, "analytics", messages[half:])

        await wait_exact(http, survivor.url, expected)  # after the rebalance, on w1 alone
        takeover = (await Takeover.read(http, survivor.url, "analytics")).since(on_survivor)
        print(f"the survivor after the failover: {takeover.describe()}")
        assert takeover.taken_over > 0, "the survivor took the victim's partitions over"
        assert sum(takeover.skipped.values()) > 0, (
            "the survivor read again what the victim had taken and not committed, and "
            "skipped it", takeover)
        # The long commit interval was for the kill: restarted, it commits as the survivor.
        victim.env["SHOP_COMMIT_INTERVAL"] = "0.5"
        await asyncio.to_thread(workers.restart(victim).wait_ready, 120.0)
        await wait_exact(http, victim.url, expected)  # the restarted worker, complete too
        await asyncio.sleep(2.0)  # a late double count would show by now
        assert await counted(http, survivor.url) == expected
        assert await counted(http, victim.url) == expected


def events_taken(metrics: str) -> float:
    """Return the events a worker's analytics agent has taken (its rows are written)."""
    return sample(metrics, "shop_analytics_window_events_total")
