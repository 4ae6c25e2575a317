"""Centralized logging on a real worker and a real (private) RabbitMQ.

A record logged by a view reaches ``GET /api/admin/logs`` with its request id; the filters
work; only admins may read; an ERROR record is an alert (served, and an ``admin_alert`` on
Kafka); and an outage of RabbitMQ loses no record and stores none twice.

The outage test also creates promotion codes while RabbitMQ is down: their
promotion.created/activated events arrive once each after it is back.

Each test has its own RabbitMQ node: ``logs.central`` is one queue per RabbitMQ, and on the
machine's shared node other people's workers would take a share of this test's records.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from models.tracing import REQUEST_ID_HEADER
from scripts.devstack import Broker, Worker
from tests.integration.fixtures import WorkerFactory
from tests.integration.kafka import consume_until
from tests.integration.rabbit import PrivateRabbit, bind_promotion_events, promotion_events
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration


async def log_test_record(shop: Shop, message: str, level: str = "INFO",
                          request_id: str | None = None) -> str:
    """Have the worker log ``message`` at ``level``; return the request id."""
    rid = request_id or uuid.uuid4().hex
    status, body = await shop.call("POST", "/api/admin/logs/test",
                                   headers={**ADMIN, "X-Request-Id": rid},
                                   json={"level": level, "message": message})
    assert status == 202, body
    assert body["request_id"] == rid
    return rid


async def search(shop: Shop, query: str, count: int, within: float = 30.0) -> dict[str, Any]:
    """Return ``GET /api/admin/logs?<query>`` once it has ``count`` items (or fail)."""
    deadline = time.monotonic() + within
    while True:
        status, body = await shop.call("GET", f"/api/admin/logs?{query}", headers=ADMIN)
        assert status == 200, body
        if len(body["items"]) >= count:
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"{query}: {len(body['items'])} of {count} records: {body}")
        await asyncio.sleep(0.2)


async def start(workers: WorkerFactory, rabbit: PrivateRabbit) -> Worker:
    worker = workers.start("w1", SHOP_RABBIT_URL=rabbit.url)
    await asyncio.to_thread(worker.wait_ready)
    return worker


async def test_a_views_record_reaches_the_central_log_with_its_request_id(
        workers: WorkerFactory, private_rabbit: PrivateRabbit, broker: Broker) -> None:
    worker = await start(workers, private_rabbit)
    marker = uuid.uuid4().hex[:12]
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        rid = await log_test_record(shop, f"hello {marker}")
        body = await search(shop, f"q={marker}", 1)
        [record] = body["items"]
        assert record["request_id"] == rid
        assert record["service"] == "admin" and record["level"] == "INFO"
        assert record["logger"] == "web.admin" and marker in record["message"]
        assert record["worker"] == worker.url
        assert body["complete"] and body["workers"][0]["ok"]

        # Filters: service, level and above, since, message substring; newest first.
        other = uuid.uuid4().hex[:12]
        for level in ("INFO", "WARNING", "ERROR"):
            await log_test_record(shop, f"{other} {level.lower()}", level)
        every = (await search(shop, f"q={other}", 3))["items"]
        assert [r["level"] for r in every] == ["ERROR", "WARNING", "INFO"]
        warned = (await search(shop, f"q={other}&level=warning", 2))["items"]
        assert [r["level"] for r in warned] == ["ERROR", "WARNING"]
        since = every[1]["time"]
        later = (await search(shop, f"q={other}&since={since.replace('+', '%2B')}", 2))["items"]
        assert [r["level"] for r in later] == ["ERROR", "WARNING"]
        assert len((await search(shop, f"q={other}&service=admin", 3))["items"]) == 3
        assert (await search(shop, f"q={other}&service=orders", 0))["items"] == []
        assert len((await search(shop, f"q={other}&limit=1", 1))["items"]) == 1
        # One request's records, by its request id: the view's, and the gateway's step.
        traced = await log_test_record(shop, f"{other} traced", "WARNING")
        records = (await search(shop, f"request_id={traced}", 2))["items"]
        assert sorted(r["logger"] for r in records) == ["trace.http", "web.admin"]
        assert all(r["request_id"] == traced for r in records)
        [only] = [r for r in records if r["logger"] == "web.admin"]
        assert "traced" in only["message"]
        [step] = [r for r in records if r["logger"] == "trace.http"]
        assert (step["service"], step["level"]) == ("trace", "INFO")
        assert step["trace"]["path"] == "/api/admin/logs/test" and step["trace"]["status"] == 202
        status, _ = await shop.call("GET", "/api/admin/logs?level=loud", headers=ADMIN)
        assert status == 422

        # Only admins.
        status, _ = await shop.call("GET", "/api/admin/logs", headers=customer("c-1"))
        assert status == 403
        status, _ = await shop.call("GET", "/api/admin/logs")
        assert status == 401
        status, _ = await shop.call("GET", "/api/admin/alerts")
        assert status == 401

        # The ERROR record is an alert: served, and sent to the notifications topic.
        error = every[0]
        status, alerts = await shop.call("GET", "/api/admin/alerts", headers=ADMIN)
        assert status == 200
        assert error["event_id"] in [a["event_id"] for a in alerts["items"]]
        assert all(a["level"] in ("ERROR", "CRITICAL") for a in alerts["items"])
        # ... and a step of its request's trace: the alert carried the request id on.
        handled = (await search(shop, f"request_id={error['request_id']}&q=admin_alert", 1))
        assert handled["items"][0]["trace"]["type"] == "admin_alert"
    notices = await consume_until(broker.bootstrap, "notifications", 1, within=20)
    events = [json.loads(n.value) for n in notices]
    assert any(e["type"] == "admin_alert" and e["event_id"] == error["event_id"]
               for e in events), events
    assert any(dict(n.headers or ()).get(REQUEST_ID_HEADER) == error["request_id"].encode()
               for n in notices), [n.headers for n in notices]
    assert {n.key for n in notices} == {b"admins"}


def stored_lines(datadir: Path, marker: str) -> list[dict[str, Any]]:
    """Return the records of the worker's store files whose message holds ``marker``.

    A line is one record, or a group of them (a JSON array) stored as it came.
    """
    found = []
    for path in (datadir / "logs").glob("central*.jsonl"):
        for line in path.read_bytes().splitlines():
            decoded = json.loads(line)
            for entry in decoded if isinstance(decoded, list) else [decoded]:
                if marker in entry.get("message", ""):
                    found.append(entry)
    return found


async def test_an_outage_loses_no_record_or_promotion_event_and_stores_none_twice(
        workers: WorkerFactory, private_rabbit: PrivateRabbit) -> None:
    await bind_promotion_events(private_rabbit.url)
    worker = await start(workers, private_rabbit)
    marker = f"outage-{uuid.uuid4().hex[:8]}"
    sent = 0
    codes = 0
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)

        async def produce(seconds: float) -> None:
            nonlocal sent, codes
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                await log_test_record(shop, f"{marker} n={sent} .")
                sent += 1
                if sent % 25 == 0:  # a promotion: promotion.created and .activated
                    codes += 1
                    status, body = await shop.call("POST", "/api/promotions", headers=ADMIN,
                                                   json={"code": f"OUTAGE{codes}",
                                                         "kind": "fixed", "value": 100})
                    assert status in (201, 202), body
                await asyncio.sleep(0.01)

        await produce(2.0)
        await asyncio.to_thread(private_rabbit.stop_app)
        during = sent
        await produce(4.0)
        during = sent - during
        await asyncio.to_thread(private_rabbit.start_app)
        await produce(2.0)
        body = await search(shop, f"q={marker}&limit=1000", sent, within=90)
    numbers = Counter(int(r["message"].split("n=")[1].split()[0]) for r in body["items"])
    on_disk = Counter(int(r["message"].split("n=")[1].split()[0])
                      for r in stored_lines(worker.datadir, marker))
    print(f"produced {sent} records ({during} during the outage); served {len(numbers)}, "
          f"stored {sum(on_disk.values())}")
    assert during > 0
    assert sorted(numbers) == list(range(sent)), "every record is served"
    assert sorted(on_disk) == list(range(sent)), "every record is stored"
    assert max(on_disk.values()) == 1, "no record is stored twice"
    events = await promotion_events(private_rabbit.url, 2 * codes)
    print(f"{codes} promotions created around the outage: {dict(events)}")
    assert events == Counter({"promotion.created": codes, "promotion.activated": codes})
