"""bench/http.py: the HTTP phase's rounds become one result an endpoint, with median ratios."""

from __future__ import annotations

from bench.http import http_results, merge_loads
from bench.http_load import Load


def _load(requests: int, seconds: float, latency: float, cpu: float | None = 1.0) -> Load:
    return Load(requests, seconds, [latency] * requests, 0.5, cpu)


def test_rounds_are_merged_into_one_load() -> None:
    merged = merge_loads([_load(10, 1.0, 0.001), _load(20, 2.0, 0.003, cpu=None)])
    assert (merged.requests, merged.seconds, len(merged.latencies)) == (30, 3.0, 30)
    assert merged.client_cpu_seconds == 1.0
    assert merged.server_cpu_seconds is None  # one round without /proc: no server CPU


def test_the_ratio_is_the_median_of_each_rounds_ratio_to_the_bare_handler() -> None:
    # The machine slows down in round 2, for the bare handler and the shop alike (ratio 0.5
    # again), and the shop alone stalls in round 3 (0.1). The median is 0.5; the totals
    # (3,000 requests in 0.4 s against 1.6 s) would say 0.25.
    bare = [_load(1000, 0.1, 0.001), _load(1000, 0.2, 0.002), _load(1000, 0.1, 0.001)]
    shop = [_load(1000, 0.2, 0.004), _load(1000, 0.4, 0.008), _load(1000, 1.0, 0.020)]
    results = http_results([("bare", bare), ("shop", shop)], concurrency=50)
    assert [r.name for r in results] == ["bare", "shop"]
    assert results[0].extra["ratio_to_bare_aiohttp"] == 1.0
    shop_result = results[1].extra
    assert shop_result["round_rates"] == [5000, 2500, 1000]
    assert shop_result["median_rate"] == 2500.0
    assert shop_result["ratio_to_bare_aiohttp"] == 0.5  # rounds: 0.5, 0.5, 0.1
    assert shop_result["rounds"] == 3 and results[1].messages == 3000
    assert shop_result["p50_ms"] == 8.0 and shop_result["p99_ms"] == 20.0
