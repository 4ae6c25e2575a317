"""Two workers share the work; one is killed with SIGKILL; totals stay exact.

Events flow to the analytics topic while worker B is killed mid-stream. A takes over B's
partitions, replays what B had processed but not committed, and must not count it twice
(the replay guard in tables/replay.py). B commits rarely and dies only once it has written
rows, so the kill always hits uncommitted work: the test asserts that A took partitions over
and that its guard skipped replayed events. Keyed reads are answered through either worker
(routed with ``table_route`` to the owner). B restarts and rejoins.
"""

from __future__ import annotations

import ast
import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest

from models.analytics import Tracked
from models.base import new_event_id, utcnow
from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import get_json, wait_for_json
from tests.integration.kafka import produce, records_of_key
from tests.integration.metrics import (
    VICTIM_COMMIT_INTERVAL,
    WRITES_OUT_S,
    Takeover,
    kill_once_working,
    sample,
)
from tests.integration.shop import ADMIN

pytestmark = [pytest.mark.integration, pytest.mark.crash]

SESSIONS = [f"session-{n:03d}" for n in range(48)]
EVENTS = 3000
BATCH = 100
PAUSE_S = 0.1  # about 1,000 events/s: B is mid-stream when it dies
#: The table whose skipped replays prove the kill hit uncommitted work (its metric label).
SESSION_ACTIVITY = "session-activity"


def event_bytes(session_id: str) -> bytes:
    """Return one valid tracking event for ``session_id``."""
    return Tracked(type="page_view", event_id=new_event_id(), occurred_at=utcnow(),
                   session_id=session_id).dumps()


async def produce_steadily(bootstrap: str, expected: Counter[str]) -> None:
    """Produce EVENTS events in batches, about 1,000 a second."""
    sent = 0
    while sent < EVENTS:
        batch = [SESSIONS[(sent + i) % len(SESSIONS)] for i in range(BATCH)]
        await produce(bootstrap, "analytics", [(s, event_bytes(s)) for s in batch])
        expected.update(batch)
        sent += len(batch)
        await asyncio.sleep(PAUSE_S)


def events_taken(metrics: str) -> float:
    """Return the tracking events a worker's analytics agent has taken (rows written)."""
    return sample(metrics, "shop_analytics_window_events_total")


async def all_exact(http: aiohttp.ClientSession, worker: Worker,
                    expected: Counter[str]) -> dict[str, str]:
    """Read every session through ``worker``; return who served each (or fail)."""
    served_by: dict[str, str] = {}
    for session_id in SESSIONS:
        url = f"{worker.url}/api/analytics/sessions/{session_id}"
        status, row, server = await get_json(http, url)
        assert status == 200, (session_id, status, row)
        assert row["events"] == expected[session_id], (session_id, row, expected[session_id])
        served_by[session_id] = server
    return served_by


async def settled(http: aiohttp.ClientSession, worker: Worker, expected: Counter[str],
                  within: float) -> None:
    """Wait until every session read through ``worker`` shows its expected total."""
    deadline = time.monotonic() + within
    while True:
        try:
            await all_exact(http, worker, expected)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(
    workers: WorkerFactory,
) -> None:
    # B commits rarely: what it processes before the kill is all uncommitted, so A reads it
    # again and the guard must skip it (the test asserts it did).
    a, b = workers.start("a"), workers.start("b", SHOP_COMMIT_INTERVAL=VICTIM_COMMIT_INTERVAL)
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    # Both joined one group: wait until both report ready after the last rebalance.
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        for worker in (a, b):
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=30)

    async with aiohttp.ClientSession(headers=ADMIN) as http:
        before_kill = (await get_json(http, f"{a.url}/ready"))[1]["kafka"]["assigned_partitions"]
        on_a = await Takeover.read(http, a.url, "analytics")

        expected: Counter[str] = Counter()
        producing = asyncio.create_task(produce_steadily(workers.broker.bootstrap, expected))
        # B dies mid-stream, once it has written rows of events it has not committed.
        taken = await kill_once_working(http, b, events_taken)
        killed_at = [time.monotonic()]
        print(f"killed B {WRITES_OUT_S} s after it had taken {taken:.0f} events (none committed)")
        await producing
    assert sum(expected.values()) == EVENTS

    async with aiohttp.ClientSession(headers=ADMIN) as http:
        status, ready, _ = await wait_for_json(
            http, f"{a.url}/ready",
            lambda status, body: status == 200
            and body["kafka"]["assigned_partitions"] > before_kill,
            within=60)
        assert status == 200, ready
        print(f"failover: A owns every partition {time.monotonic() - killed_at[0]:.1f} s "
              "after B was killed")
        try:
            await settled(http, a, expected, within=60)
        except AssertionError:
            await _explain_short(http, a, expected, workers.broker.bootstrap)
            raise
        print(f"all {len(SESSIONS)} sessions exact through A "
              f"{time.monotonic() - killed_at[0]:.1f} s after the kill")
        takeover = (await Takeover.read(http, a.url, "analytics")).since(on_a)
        print(f"A after the failover: {takeover.describe()}")
        assert takeover.taken_over > 0, "A took B's partitions over"
        assert sum(n for table, n in takeover.skipped.items()
                   if table.endswith(SESSION_ACTIVITY)) > 0, (
            "A read again what B had processed and not committed, and skipped it", takeover)

    # B comes back with its data dir and rejoins; reads through either worker are exact and
    # each key is answered by its owner.
    restarted_at = time.monotonic()
    # The long commit interval was for the kill: restarted, it commits as a worker does.
    del b.env["SHOP_COMMIT_INTERVAL"]
    await asyncio.to_thread(workers.restart(b).wait_ready)
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        for worker in (a, b):
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=30)
        print(f"B rejoined and both ready {time.monotonic() - restarted_at:.1f} s after restart")
        await settled(http, b, expected, within=30)
        via_a = await all_exact(http, a, expected)
        via_b = await all_exact(http, b, expected)
    assert via_a == via_b, "a key must be answered by its owner, whichever worker is asked"
    assert set(via_a.values()) == {a.url, b.url}, "both workers own some sessions"


async def _explain_short(http: aiohttp.ClientSession, worker: Worker, expected: Counter[str],
                         bootstrap: str) -> None:
    """Print what the broker holds of every session the worker counts short (a diagnosis)."""
    for session_id in SESSIONS:
        _, row, _ = await get_json(http, f"{worker.url}/api/analytics/sessions/{session_id}")
        if row.get("events") == expected[session_id]:
            continue
        print(f"---- {session_id}: {row.get('events')} of {expected[session_id]}")
        for line in await records_of_key(
                bootstrap, ["shopstream-session-activity-changelog"], session_id, limit=5000):
            where, _, raw = line.partition(": ")
            data = json.loads(ast.literal_eval(raw))
            print(f"  {where}: events {data.get('events')}, applied "
                  f"{(data.get('_applied') or {}).get('offsets')}")
