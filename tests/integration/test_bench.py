"""``make bench`` keeps working: a tiny run of every phase writes its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)  # every phase starts brokers and workers of its own
def test_a_small_benchmark_run_measures_every_phase(tmp_path: Path, rabbit_url: str) -> None:
    out = tmp_path / "bench.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--messages", "2000", "--faust-messages", "500",
         "--shop-messages", "300", "--saga-orders", "100", "--saga-latency-seconds", "1",
         "--http-requests", "300", "--log-records", "500", "--log-requests", "200",
         "--tracking-events", "300", "--scaling-rounds", "1", "--http-rounds", "2",
         "--rabbit-url", rabbit_url, "--json", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops its brokers and workers, then exits
        stdout, stderr = bench.communicate(timeout=60)
        pytest.fail("the small bench run took over 540 s:\n" + stdout[-3000:] + stderr[-3000:])
    result = subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["cores"] >= 1 and document["broker"]["name"] == "tansu"
    phases = document["phases"]
    assert [p["messages"] for p in phases[:5]] == [2000, 2000, 500, 300, 100]
    assert phases[5]["extra"]["p99_ms"] >= phases[5]["extra"]["p50_ms"] > 0
    saga, steady = phases[4]["extra"], phases[5]["extra"]
    assert saga["messages_per_order"] > saga["saga_messages_per_order"] > 0
    assert saga["changelog_messages_per_order"] > 0 and saga["messages_by_topic"]["orders"] >= 300
    assert steady["steady_rate"] == 20 and steady["steady_p99_ms"] >= steady["steady_p50_ms"] > 0
    assert steady["steady_post_p99_ms"] >= steady["steady_post_p50_ms"] > 0
    assert steady["relay_hops"] == 4 and steady["relay_p99_ms"] >= steady["relay_p50_ms"] > 0
    assert "raw aiokafka through the same 4 hops" in result.stdout
    assert "Kafka messages an order:" in result.stdout
    ledger = {int(size): us for size, us in saga["stock_command_us_by_ledger"].items()}
    assert sorted(ledger) == [10, 100, 1000, 5000] and all(us > 0 for us in ledger.values())
    assert "stock command against its sku's ledger" in result.stdout
    assert all(p["msgs_per_s"] > 0 for p in phases)
    assert phases[1]["ratio_to_baseline"] == 1.0
    assert phases[2]["extra"]["table_total"] == 500  # every event counted, once
    http = phases[6:10]
    assert [p["messages"] for p in http] == [600, 600, 600, 600]  # 300 in each of 2 rounds
    assert all(len(p["extra"]["round_rates"]) == 2 for p in http)
    assert "/health" in http[1]["name"] and "/api/users/me" in http[2]["name"]
    assert http[0]["extra"]["ratio_to_bare_aiohttp"] == 1.0
    assert all(p["extra"]["p99_ms"] >= p["extra"]["p50_ms"] > 0 for p in http)
    assert all(p["extra"]["ratio_to_bare_aiohttp"] > 0 for p in http)
    assert "x bare aiohttp" in result.stdout
    raw, shipped, off, on = phases[10:14]
    assert [p["messages"] for p in phases[10:14]] == [500, 500, 200, 200]
    assert raw["name"].startswith("raw aio-pika")
    assert shipped["extra"]["ratio_to_raw_aio_pika"] > 0
    assert on["extra"]["p99_ratio_to_off"] > 0 and off["extra"]["p99_ms"] > 0
    assert on["extra"]["paced_cpu_ratio_to_off"] > 0
    assert len(on["extra"]["paced_p99_ms_rounds"]) == 6
    assert "x raw (goal >= 0.5)" in result.stdout
    latency, pipeline, inbox = phases[14:17]
    one, two, bare_two = (p for p in phases if p["extra"].get("phase") == "scaling")
    assert [p["extra"]["workers"] for p in (one, two, bare_two)] == [1, 2, 2]
    assert [p["extra"]["standby_replicas"] for p in (one, two, bare_two)] == [0, 1, 0]
    assert one["messages"] == two["messages"] == bare_two["messages"] == 100
    assert all(p["extra"]["confirmed"] == 100 for p in (one, two, bare_two))
    assert two["extra"]["ratio_to_one_worker"] > 0 and bare_two["extra"]["ratio_to_one_worker"] > 0
    assert all(p["extra"]["cpu_ms_per_order"] > 0 for p in (one, two, bare_two))
    assert two["extra"]["cpu_ratio_to_one_worker"] > 0
    assert bare_two["extra"]["net_cpu_ratio_to_one_worker"] > 0
    assert "x one worker" in result.stdout and "CPU ms an order" in result.stdout
    bare_scaling = [p for p in phases if p["extra"].get("phase") == "scaling-floor"]
    assert [(p["extra"]["workers"], p["extra"]["standby_replicas"]) for p in bare_scaling] == [
        (1, 0), (2, 1), (2, 0)]
    assert all(p["messages"] == 500 and p["extra"]["changelog_records"] >= 500
               and p["extra"]["cpu_us_per_event"] > 0 for p in bare_scaling)
    assert bare_scaling[0]["extra"]["cpu_ratio_to_one_worker"] == 1.0
    assert "Faust's floor under scale-out" in result.stdout
    tracked = [p for p in phases if p["extra"].get("phase") == "scaling-analytics"]
    assert [(p["extra"]["workers"], p["extra"]["standby_replicas"]) for p in tracked] == [
        (1, 0), (2, 1), (2, 0)]
    assert all(p["messages"] == 300 and len(p["extra"]["rates"]) == 1 for p in tracked)
    assert tracked[0]["extra"]["ratio_to_one_worker"] == 1.0
    assert all(p["extra"]["ratio_to_one_worker"] > 0 for p in tracked)
    windows = next(p for p in phases if p["extra"].get("phase") == "analytics"
                   and "counts" in p["extra"])
    assert windows["messages"] == 300 and windows["extra"]["exact"] is True
    assert latency["extra"]["streams"] == 500 and latency["messages"] == 100
    assert latency["extra"]["p99_ms"] >= latency["extra"]["p50_ms"] > 0
    for notified in (pipeline, inbox):
        assert notified["messages"] == 300 and notified["extra"]["ratio_to_bare_faust_agent"] > 0
    floor = [p for p in phases if p["extra"].get("phase") == "faust-floor"]
    assert [(p["messages"], p["extra"]["mode"]) for p in floor] == [
        (500, "pass"), (500, "write"), (500, "bulk-write")]
    assert all(p["extra"]["table_total"] == 500 for p in floor)  # every event taken, once
    assert floor[0]["extra"]["event_us"] > 0 and floor[0]["extra"]["table_write_us"] != 0
    assert floor[0]["extra"]["bulk_table_write_us"] != 0
    assert "Faust's floor here:" in result.stdout
