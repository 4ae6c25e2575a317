"""Every in-process structure that traffic fills is bounded or expires (docs/memory.md)."""

from __future__ import annotations

import asyncio
import json
from unittest.mock import patch

from rabbit_bridge.consumer import RecentIds
from runtime.tables import ReadCache
from tables.notifications import InboxWatchers
from tables.orders import OrderWatchers
from web.login_throttle import LoginThrottle
from web.middleware import TokenBuckets


def test_the_read_cache_keeps_its_size() -> None:
    cache = ReadCache(100)
    for n in range(1000):
        cache.put(f"k-{n}", b"row")
    assert len(cache) == 100 and cache.get("k-999") == b"row"


def test_the_rabbit_dedup_ids_keep_their_size() -> None:
    ids = RecentIds(size=50)
    for n in range(500):
        ids.seen(f"m-{n}")
    assert len(ids._ids) == 50 and ids.seen("m-499") and not ids.seen("m-0")


def test_rate_limit_buckets_of_idle_callers_are_forgotten() -> None:
    buckets = TokenBuckets(rate=100.0, burst=200.0)  # a bucket is full again after 2 s
    for n in range(9_999):
        buckets.take(f"caller-{n}", now=0.0)
    buckets.take("late", now=10.0)  # the 10,000th take looks for idle buckets
    assert list(buckets._buckets) == ["late"]


def test_login_failures_from_a_spray_of_keys_stay_under_the_limit() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], limit=100)
    for n in range(1_000):
        now[0] += 0.01  # all within the longest lock-out
        throttle.failed([f"addr-{n}"])
    assert len(throttle) <= 100
    assert "addr-999" in throttle._failures and "addr-0" not in throttle._failures


def test_login_failures_older_than_the_longest_lock_out_go_first() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], limit=10, max_s=60.0)
    throttle.failed(["old"])
    now[0] = 100.0
    for n in range(10):
        throttle.failed([f"new-{n}"])
    assert "old" not in throttle._failures and "new-9" in throttle._failures
    assert len(throttle) <= 10


async def test_order_watchers_go_with_their_requests() -> None:
    watchers = OrderWatchers()
    futures = [watchers.watch(f"o-{n % 10}") for n in range(100)]
    for n, future in enumerate(futures[:50]):
        watchers.forget(f"o-{n % 10}", future)  # timed out or went away
    watchers.changed("o-1", {"status": "confirmed"})
    for n in range(10):
        watchers.changed(f"o-{n}", {})
    assert watchers._waiting == {}


async def test_inbox_watchers_go_with_their_streams() -> None:
    watchers = InboxWatchers()
    events = [(f"u-{n % 7}", watchers.watch(f"u-{n % 7}")) for n in range(70)]
    assert watchers.streams == 70
    for user_id, changed in events:
        watchers.forget(user_id, changed)
    assert watchers.streams == 0 and watchers._waiting == {}


def test_parsed_analytics_windows_keep_their_limit() -> None:
    from tables import analytics

    rows = {f"1m:{n * 60}": json.dumps({"n": n}).encode() for n in range(50)}
    with patch.object(analytics, "PARSED_LIMIT", 10), \
            patch.object(analytics, "analytics_windows", rows), \
            patch.object(analytics, "_parsed", {}):
        for n in range(50):
            assert analytics.read_window("1m", n * 60) == {"n": n}
        assert len(analytics._parsed) == 10


async def test_a_slow_support_stream_is_ended_at_its_queue_limit() -> None:
    from web import support_stream

    entries = [{"seq": n} for n in range(30)]
    hub = support_stream.FeedHub()
    with patch.object(support_stream, "QUEUE_LIMIT", 5), \
            patch.object(support_stream, "feed_entries",
                         lambda after: ([e for e in entries if e["seq"] > after], 29)), \
            patch.object(support_stream, "POLL_S", 0.001):
        queue = hub.subscribe()
        hub.last = -1
        await asyncio.sleep(0.05)
        assert queue.qsize() <= 5 and not hub._queues  # ended, not grown
