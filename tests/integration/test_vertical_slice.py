"""The loop, end to end on real brokers: topic -> agent -> RocksDB table -> web view.

Also: the table survives a restart (from RocksDB, and from the changelog alone), and a
malformed event is dead-lettered without stopping the agent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from models.analytics import Tracked
from models.base import new_event_id, utcnow
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import get_json, wait_for_json
from tests.integration.kafka import consume_until, produce
from tests.integration.metrics import VICTIM_COMMIT_INTERVAL, WRITES_OUT_S, metrics_of, sample
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration

#: Events the worker has taken, uncommitted, when it crashes.
CRASHED_ON = 40


def tracked(session_id: str, kind: str = "page_view") -> bytes:
    """Return the bytes of one valid tracking event."""
    event = Tracked(type=kind, event_id=new_event_id(), occurred_at=utcnow(),
                    session_id=session_id, path="/")
    return event.dumps()


def events_are(n: int) -> Callable[[int, Any], bool]:
    """Return a predicate: the session's row answers with ``n`` events."""
    return lambda status, body: status == 200 and body["events"] == n


async def test_events_reach_the_table_and_survive_restarts(workers: WorkerFactory) -> None:
    # The worker commits rarely, so that the events it takes just before the crash below
    # are uncommitted and read again after it (a clean stop commits).
    worker = workers.start("w1", SHOP_COMMIT_INTERVAL=VICTIM_COMMIT_INTERVAL)
    startup = await asyncio.to_thread(worker.wait_ready)
    print(f"worker start-to-ready: {startup:.2f} s")
    bootstrap = workers.broker.bootstrap
    activity = f"{worker.url}/api/analytics/sessions/"

    async with aiohttp.ClientSession(headers=ADMIN) as http:
        # Through the HTTP tracking endpoint ...
        body = {"session_id": "session-http", "events": [
            {"type": "page_view", "path": "/"}, {"type": "product_view", "sku": "SKU-1"},
            {"type": "add_to_cart", "sku": "SKU-1"}]}
        async with http.post(f"{worker.url}/api/events", json=body) as response:
            assert response.status == 202
            assert await response.json() == {"accepted": 3}
        status, row, _ = await wait_for_json(http, activity + "session-http", events_are(3))
        assert (status, row["counts"]) == (200, {"page_view": 1, "product_view": 1,
                                                 "add_to_cart": 1})

        # ... and straight onto the topic, as any producer would.
        await produce(bootstrap, "analytics",
                      [("session-raw", tracked("session-raw")) for _ in range(50)])
        status, row, _ = await wait_for_json(http, activity + "session-raw", events_are(50))
        assert (status, row["events"]) == (200, 50)

    # A clean restart with the same data dir: the rows come back from RocksDB.
    worker.stop()
    await asyncio.to_thread(workers.restart(worker).wait_ready)
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        assert (await get_json(http, activity + "session-raw"))[1]["events"] == 50
        assert (await get_json(http, activity + "session-http"))[1]["events"] == 3

        # Events taken but not committed when the worker crashes: read again after it.
        await produce(bootstrap, "analytics",
                      [("session-late", tracked("session-late")) for _ in range(CRASHED_ON)])
        await wait_for_json(http, activity + "session-late", events_are(CRASHED_ON))
        await asyncio.sleep(WRITES_OUT_S)  # the row's writes reach the changelog

    # A crash that loses the data dir: the rows come back from the changelog alone, complete
    # (Tansu's wrong end offset would stop the restore one batch short without the fix), and
    # the uncommitted events read again are skipped, not counted twice.
    worker.kill()
    shutil.rmtree(worker.datadir)
    await asyncio.to_thread(workers.restart(worker).wait_ready)
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        status, row, _ = await wait_for_json(http, activity + "session-raw", events_are(50))
        assert (status, row["events"]) == (200, 50)
        assert (await get_json(http, activity + "session-http"))[1]["events"] == 3
        await wait_for_json(http, activity + "session-late", events_are(CRASHED_ON))
        skipped = await replays_skipped(http, worker.url, at_least=CRASHED_ON, within=30)
        print(f"replays skipped after the crash: {skipped:.0f} ({CRASHED_ON} events were taken "
              "and not committed just before it)")
        assert skipped > 0, "the uncommitted events were read again, and skipped"
        assert (await get_json(http, activity + "session-late"))[1]["events"] == CRASHED_ON


async def replays_skipped(http: aiohttp.ClientSession, url: str, *, at_least: int,
                          within: float) -> float:
    """Return the session-activity replays the worker skipped, once ``at_least`` or after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        skipped = sample(await metrics_of(http, url), "shop_replays_skipped_total",
                         table="session-activity", reason="replay")
        if skipped >= at_least or time.monotonic() > deadline:
            return skipped
        await asyncio.sleep(0.2)


async def test_a_malformed_event_is_dead_lettered_and_the_agent_carries_on(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    bootstrap = workers.broker.bootstrap
    bad = [
        ("session-dlq", b"this is not json"),
        ("session-dlq", tracked("session-dlq").replace(b'"page_view"', b'"teleport"')),
        ("session-dlq", b"\xff\xfe binary"),
        ("session-dlq", json.dumps({"type": "page_view", "session_id": "session-dlq"}).encode()),
    ]
    await produce(bootstrap, "analytics", [*bad, ("session-dlq", tracked("session-dlq"))])

    async with aiohttp.ClientSession(headers=ADMIN) as http:
        url = f"{worker.url}/api/analytics/sessions/session-dlq"
        status, row, _ = await wait_for_json(http, url, events_are(1))
        assert (status, row["events"]) == (200, 1)

    # The analytics topic's one agent dead-letters what it cannot decode, once, under its name.
    letters = await consume_until(bootstrap, "dead-letters", 4)
    by_agent = Counter(json.loads(r.value)["agent"] for r in letters)
    assert by_agent == {"analytics.tracked": 4}
    docs = sorted((json.loads(r.value) for r in letters), key=lambda d: d["offset"])
    assert [d["offset"] for d in docs] == [0, 1, 2, 3]
    assert {r.key for r in letters} == {b"analytics"}
    assert all(d["source_topic"] == "analytics" and d["stage"] == "decode" for d in docs)
    assert docs[0]["value"] == "this is not json" and "not JSON" in docs[0]["error"]
    assert "teleport" in docs[1]["error"]
    assert docs[2]["value_encoding"] == "base64"
    assert "missing event_id, occurred_at" in docs[3]["error"]

    # The admin API serves them, newest first, filtered by agent or source topic.
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        base = f"{worker.url}/api/admin/dead-letters"
        async with http.get(base) as response:
            assert response.status == 200
            page = await response.json()
        assert page["complete"] and len(page["items"]) == 4
        times = [letter["failed_at"] for letter in page["items"]]
        assert times == sorted(times, reverse=True)
        async with http.get(base + "?agent=analytics.tracked&limit=3") as response:
            mine = (await response.json())["items"]
        assert len(mine) == 3 and {d["agent"] for d in mine} == {"analytics.tracked"}
        async with http.get(base + "?agent=orders.saga") as response:
            assert (await response.json())["items"] == []
        async with http.get(base + "?source_topic=orders") as response:
            assert (await response.json())["items"] == []
        async with http.get(base + "?limit=0") as response:
            assert response.status == 422

    async with aiohttp.ClientSession() as http, http.get(f"{worker.url}/metrics") as response:
        metrics = await response.text()
    assert ('shop_dead_letters_total{agent="analytics.tracked",stage="decode",'
            'topic="analytics"} 4.0') in metrics
