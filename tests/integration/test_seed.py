"""``faust -A app seed`` on a real broker and worker: the catalog appears, stock is set once.

The seed runs as a subprocess with the worker's settings, as an operator would run it. It is
run twice: the second run re-saves the products and must leave every stock as it was (a
product's initial stock is set once).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import consume_until
from tests.integration.shop import bearer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS: list[dict[str, Any]] = json.loads(
    (ROOT / "scripts" / "demo_catalog.json").read_text(encoding="utf-8"))
STOCKED = [p for p in PRODUCTS if p["initial_stock"] > 0]
ADMIN = bearer("admin-1", "admin")


def seed(worker: Worker, datadir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``faust -A app seed`` with ``worker``'s settings (its own data dir) and check it."""
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "app", "seed"],
        env={**os.environ, **worker.env, "SHOP_DATADIR": str(datadir)},
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    print(result.stdout, result.stderr[-2000:], sep="\n")
    assert result.returncode == 0, result.stderr
    assert f"{len(PRODUCTS)} products" in result.stdout
    assert f"shown by {worker.url}" in result.stdout  # it waited for its writes
    return result


async def listing_total(http: aiohttp.ClientSession, worker: Worker, within: float) -> int:
    """Poll ``GET /api/products`` until it lists every product; return its last total."""
    deadline = time.monotonic() + within
    total = -1
    while time.monotonic() < deadline:
        async with http.get(f"{worker.url}/api/products?per_page=100") as response:
            if response.status == 200:
                total = (await response.json())["total"]
                if total == len(PRODUCTS):
                    break
        await asyncio.sleep(0.2)
    return total


async def stock_of(http: aiohttp.ClientSession, worker: Worker, sku: str,
                   within: float = 20.0) -> dict[str, Any]:
    """Return ``GET /api/inventory/{sku}`` (admin), polling until the row exists."""
    deadline = time.monotonic() + within
    while True:
        async with http.get(f"{worker.url}/api/inventory/{sku}", headers=ADMIN) as response:
            body = await response.json()
            if response.status == 200 or time.monotonic() > deadline:
                assert response.status == 200, (sku, response.status, body)
                return dict(body)
        await asyncio.sleep(0.2)


async def stock_levels_sent(bootstrap: str, count: int) -> list[dict[str, Any]]:
    """Read the catalog topic until ``count`` stock_level_changed events arrived; return them.

    The inventory agent answers every Restock with one (a no-op restock included), so their
    count tells how many restocks it has processed.
    """
    deadline = time.monotonic() + 60
    while True:
        records = await consume_until(bootstrap, "catalog", 10**9, within=1.0)
        events = [json.loads(r.value) for r in records]
        levels = [e for e in events if e["type"] == "stock_level_changed"]
        if len(levels) >= count or time.monotonic() > deadline:
            return levels
        await asyncio.sleep(0.5)


async def test_seed_loads_the_catalog_and_sets_stock_once(
        workers: WorkerFactory, tmp_path: Path) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    scarce = next(p for p in PRODUCTS if 1 <= p["initial_stock"] <= 5)
    expected = {p["sku"]: {"sku": p["sku"], "available": p["initial_stock"], "reserved": 0,
                           "sold": 0} for p in STOCKED}

    await asyncio.to_thread(seed, worker, tmp_path / "seed-1")
    async with aiohttp.ClientSession() as http:
        # The seed ended once the worker showed what it sent: one read sees all of it.
        async with http.get(f"{worker.url}/api/products?per_page=1") as response:
            assert (await response.json())["total"] == len(PRODUCTS)
        assert await stock_of(http, worker, scarce["sku"]) == expected[scarce["sku"]]

        await asyncio.to_thread(seed, worker, tmp_path / "seed-2")
        # Wait until the inventory has processed the second run's restocks too.
        levels = await stock_levels_sent(workers.broker.bootstrap, 2 * len(STOCKED))
        assert len(levels) == 2 * len(STOCKED)
        assert {e["sku"]: e["available"] for e in levels} == {
            sku: row["available"] for sku, row in expected.items()}

        assert await listing_total(http, worker, within=5) == len(PRODUCTS)
        after = {p["sku"]: await stock_of(http, worker, p["sku"]) for p in STOCKED}
        assert after == expected
