"""No false "not found": a worker killed with SIGKILL, and the rows it owned are never 404.

Three or four workers, standby replicas off or on. Orders and tickets are written (each
answered 201, so each exists), one worker is killed, and every row is read through every
survivor until each answers 200: while the owner is gone, the partition moves, its table is
restored and its uncommitted events are read again, a keyed read may answer 503 with
Retry-After, never 404. Once every partition has caught up, an id that was never written is a
404 again. Every worker commits rarely, so the kill always leaves events to read again.
Every survivor is ready again, and answers every row, within SETTLE_S: the session timeout
(the kill noticed), the rejoin, the restore of the partitions taken over and the reading
again of their uncommitted events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import aiohttp
import pytest

from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import get_json, wait_for_json
from tests.integration.shop import Shop, customer

pytestmark = [pytest.mark.integration, pytest.mark.crash]

CUSTOMERS = [f"nf-{n}" for n in range(6)]
ORDERS = 24
TICKETS = 12
SKU = "NOTFOUND-1"
#: How long the survivors may take to answer every row (a rebalance, a restore, a replay).
SETTLE_S = 35.0


async def written_rows(shop: Shop) -> list[tuple[str, str]]:
    """Write orders and tickets; return (path, owner's user id) of each, all answered 201."""
    await shop.add_product(SKU, 10_000)
    rows = []
    for n in range(ORDERS):
        user = CUSTOMERS[n % len(CUSTOMERS)]
        status, body = await shop.place(user, [(SKU, 1)])
        assert status == 201, body
        rows.append((f"/api/orders/{body['id']}", user))
    for n in range(TICKETS):
        user = CUSTOMERS[n % len(CUSTOMERS)]
        status, body = await shop.call("POST", "/api/support/tickets", headers=customer(user),
                                       json={"subject": f"ticket {n}", "body": "help"})
        assert status == 201, body
        rows.append((f"/api/support/tickets/{body['id']}", user))
    return rows


async def read_until_all_found(http: aiohttp.ClientSession, survivors: list[Worker],
                               rows: list[tuple[str, str]]
                               ) -> tuple[Counter[int], dict[tuple[str, str, str], object]]:
    """Read every row through every survivor until each answered 200 (or SETTLE_S passed);
    fail on a 404. Return the statuses seen and the last answer of each read still not 200."""
    seen: Counter[int] = Counter()
    last: dict[tuple[str, str, str], object] = {}
    missing = {(worker.url, path, user) for worker in survivors for path, user in rows}
    deadline = time.monotonic() + SETTLE_S
    while missing and time.monotonic() < deadline:
        for url, path, user in sorted(missing):
            try:
                async with http.get(url + path, headers=customer(user)) as answer:
                    status = answer.status
                    body = await answer.json()
                    served = answer.headers.get("X-Served-By")
                    retry_after = answer.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError):
                status, body, served, retry_after = 0, None, None, None
            seen[status] += 1
            last[(url, path, user)] = (status, served, body)
            assert status != 404, (url, path, body)
            assert status in (0, 200, 503), (url, path, status, body)
            if status == 503:
                assert retry_after, (url, path)
            if status == 200:
                missing.discard((url, path, user))
        if missing:
            await asyncio.sleep(0.2)  # what Retry-After asks for, shortened
    return seen, {key: last.get(key) for key in sorted(missing)}


async def watch_readiness(http: aiohttp.ClientSession, survivors: list[Worker]) -> list[dict]:
    """Look at every survivor's /ready until cancelled: each answer is 200, or 503 with the
    partitions a restore still reads while the worker restores (``kafka.restoring``).
    Return the restores seen."""
    restores: list[dict] = []
    try:
        while True:
            for worker in survivors:
                status, body, _ = await get_json(http, worker.url + "/ready")
                assert status in (200, 503), (worker.name, status, body)
                if body["kafka"]["recovering"]:
                    assert isinstance(body["kafka"]["restoring"], dict), body
                    assert all(n > 0 for n in body["kafka"]["restoring"].values()), body
                    if body["kafka"]["restoring"]:
                        restores.append(body["kafka"]["restoring"])
            await asyncio.sleep(0.5)
    except asyncio.CancelledError:
        return restores


async def one_killed(workers: WorkerFactory, count: int, standby: int) -> None:
    started = [workers.start(f"w{n}", SHOP_STANDBY_REPLICAS=str(standby),
                             SHOP_COMMIT_INTERVAL="60") for n in range(count)]
    await asyncio.gather(*(asyncio.to_thread(worker.wait_ready) for worker in started))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for worker in started:
            await wait_for_json(http, f"{worker.url}/ready",
                                lambda status, body: status == 200, within=60)
        rows = await written_rows(Shop(http, started[0].url))
        victim, survivors = started[-1], started[:-1]
        victim.kill()
        killed = time.monotonic()
        watching = asyncio.ensure_future(watch_readiness(http, survivors))
        try:
            seen, missing = await read_until_all_found(http, survivors, rows)
        finally:
            watching.cancel()
        restores = await watching  # raises what the watch found wrong
        print(f"restores seen on /ready: {len(restores)}, e.g. {restores[:1]}")
        print(f"{count} workers, standby {standby}: answers while recovering {dict(seen)}, "
              f"{len(missing)} reads not 200 {time.monotonic() - killed:.1f} s after the kill")
        for key, answer in missing.items():
            print("not 200:", key, answer)
        not_ready = {}
        if missing:  # say which survivor is not back, and why (its /ready's details)
            for worker in survivors:
                status, body, _ = await get_json(http, worker.url + "/ready")
                if status != 200:
                    not_ready[worker.name] = body
        assert not missing, (f"{len(missing)} reads still not 200 after {SETTLE_S} s "
                             f"({dict(seen)}); survivors not ready: {not_ready}")

        # Caught up: a row that was never written is a 404 again, on every survivor.
        never = f"/api/orders/{uuid.uuid4().hex}"
        for worker in survivors:
            assert await answer_once_settled(http, worker.url + never) == 404


async def answer_once_settled(http: aiohttp.ClientSession, url: str) -> int:
    """Return the first status of ``url`` that is not a 503 (within SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        async with http.get(url, headers=customer(CUSTOMERS[0])) as answer:
            if answer.status != 503 or time.monotonic() > deadline:
                return answer.status
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(("count", "standby"), [(3, 0), (3, 1), (4, 0), (4, 1)])
async def test_rows_of_a_killed_worker_are_never_404_on_the_survivors(
    workers: WorkerFactory, count: int, standby: int,
) -> None:
    await one_killed(workers, count, standby)
