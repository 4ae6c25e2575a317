"""``make bench --only soak`` keeps working: a short soak reports the worker's memory.

Apart from ``test_bench.py``: one worker at a light load, so it runs beside the other tests
(tests/conftest.py), not after the small bench run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_a_short_soak_reports_the_workers_memory(tmp_path: Path, rabbit_url: str) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "soak", "--soak-seconds", "12",
         "--soak-idle-seconds", "5", "--soak-users", "5", "--soak-rate", "10",
         "--rabbit-url", rabbit_url, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    soak = json.loads(out.read_text())["phases"][0]["extra"]
    assert soak["phase"] == "soak"
    assert 0 < soak["rss_start_mb"] <= soak["rss_peak_mb"]
    assert soak["rss_idle_mb"] > 0 and isinstance(soak["last_half_growth_pct"], float)
    assert soak["memtables_end_mb"] is not None and soak["block_cache_end_mb"] is not None
    assert any(not s["loaded"] for s in soak["samples"])  # sampled after the load too
    assert "RSS MB: start" in result.stdout and "last half grew" in result.stdout
