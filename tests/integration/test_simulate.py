"""``faust -A app simulate`` against a real worker: it runs, prints a summary, places orders.

The simulation runs as a subprocess, as an operator would run it, with no ``SHOP_*`` setting
but the broker's (every command checks Kafka answers before it runs) and a data dir of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.fixtures import WorkerFactory
from tests.integration.shop import Shop

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SKUS = {"SIM-BOOK-1": "books", "SIM-BOOK-2": "books", "SIM-TOY-1": "toys",
        "SIM-TOY-2": "toys"}


def simulate(url: str, kafka_env: dict[str, str],
             datadir: Path) -> subprocess.CompletedProcess[str]:
    """Run a 5 s simulation against ``url``; return the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(kafka_env, SHOP_DATADIR=str(datadir))
    return subprocess.run(
        [sys.executable, "-m", "faust", "-A", "app", "simulate", "--users", "6", "--rate", "10",
         "--duration", "5", "--seed", "9", "--url", url],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


async def test_simulate_places_orders_through_the_api(workers: WorkerFactory,
                                                      tmp_path: Path) -> None:
    worker = workers.start("w1", SHOP_PASSWORD_HASH_COST="light")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        for sku, category in SKUS.items():
            await shop.add_product(sku, 500, category=category)
        await shop.wait_for_catalog(len(SKUS))
        before = {sku: await shop.stock(sku) for sku in SKUS}

        kafka_env = {k: v for k, v in worker.env.items() if k.startswith("SHOP_KAFKA")}
        result = await asyncio.to_thread(simulate, worker.url, kafka_env, tmp_path / "sim")
        print(result.stdout, result.stderr[-3000:], sep="\n")
        assert result.returncode == 0, result.stderr[-3000:]
        out = result.stdout

        assert re.search(r"^\[\s*\d+\.\ds\] actions=\d+ errors=0", out, re.MULTILINE), out
        summary = re.search(r"simulate: (\d+) actions, \d+ requests .* \((\d+) errors", out)
        assert summary, out
        assert int(summary.group(1)) > 10
        assert int(summary.group(2)) == 0, out  # no 5xx, no connection error
        rows = re.findall(r"^(?:GET|POST) \S+\s+(\d{3}|-)\s+\d+", out, re.MULTILINE)
        assert rows and all(status.startswith(("2", "4")) for status in rows), out
        orders = re.search(r"orders: placed=(\d+) confirmed=(\d+)", out)
        assert orders and int(orders.group(1)) > 0 and int(orders.group(2)) > 0, out

        # The orders exist: their units are reserved or sold.
        after = {sku: await shop.stock(sku) for sku in SKUS}
        moved = sum(after[s]["reserved"] + after[s]["sold"] - before[s]["reserved"]
                    - before[s]["sold"] for s in SKUS)
        assert moved > 0, (before, after)
