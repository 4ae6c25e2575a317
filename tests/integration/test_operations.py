"""Operations endpoints on a real worker: /health, /ready with per-dependency detail, /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from scripts.devstack import StackError, free_port
from tests.integration.fixtures import WorkerFactory
from tests.integration.http import get_json, wait_for_json
from tests.integration.shop import ADMIN

pytestmark = pytest.mark.integration


async def test_ready_reports_each_dependency_and_metrics_count_events(
    workers: WorkerFactory,
) -> None:
    worker = workers.start("w1")
    await asyncio.to_thread(worker.wait_ready)
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        status, body, served_by = await get_json(http, f"{worker.url}/ready")
        assert status == 200
        assert body["kafka"]["ready"] and body["rabbitmq"]["ready"]
        assert body["kafka"]["assigned_partitions"] > 0
        assert body["kafka"]["partitions_not_fetched"] == {}  # a ready worker reads them all
        assert served_by == worker.url
        assert (await get_json(http, f"{worker.url}/health"))[:2] == (200, {"status": "ok"})

        tracking = {"session_id": "session-metrics", "events": [{"type": "page_view"}] * 5}
        async with http.post(f"{worker.url}/api/events", json=tracking) as response:
            assert response.status == 202
        await wait_for_json(http, f"{worker.url}/api/analytics/sessions/session-metrics",
                            lambda status, body: status == 200 and body["events"] == 5)
        status, body, _ = await get_json(http, f"{worker.url}/api/analytics/sessions/nobody")
        assert (status, body["error"]["code"]) == (404, "not_found")
        async with http.get(f"{worker.url}/metrics") as response:
            assert response.status == 200
            metrics = await response.text()
    # The five events left in one pack (agents/tracking.py): one message, five events taken.
    assert 'shop_messages_received_per_topic_total{topic="analytics"} 1.0' in metrics
    assert "shop_analytics_window_events_total 5.0" in metrics
    assert "shop_events_runtime_ms_count" in metrics  # processing latency
    assert 'shop_topic_partition_end_offset{partition=' in metrics  # with committed: lag
    assert 'shop_http_status_codes_total{status_code="202"}' in metrics
    # A view's 4xx is counted as what the client got, not as a 500.
    assert 'shop_http_status_codes_total{status_code="404"}' in metrics
    assert 'status_code="500"' not in metrics


async def test_not_ready_without_rabbitmq_names_the_setting(workers: WorkerFactory) -> None:
    closed = free_port()
    worker = workers.start("w1", SHOP_RABBIT_URL=f"amqp://guest:secret@127.0.0.1:{closed}/")
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        status, body, _ = await wait_for_json(
            http, f"{worker.url}/ready",
            lambda status, body: status == 503 and body["kafka"]["ready"], within=30)
    assert status == 503
    assert body["rabbitmq"]["ready"] is False
    assert "Connect" in (body["rabbitmq"]["error"] or "")
    with pytest.raises(StackError):
        await asyncio.to_thread(worker.wait_ready, 1.0)
    log = worker.log_path.read_text() if worker.log_path else ""
    assert "SHOP_RABBIT_URL" in log and "secret" not in log


def test_a_bad_setting_stops_the_worker_with_one_line(workers: WorkerFactory) -> None:
    worker = workers.start("w1", SHOP_TOPIC_PARTITIONS="many")
    assert worker.process is not None
    assert worker.process.wait(30) != 0
    log = worker.log_path.read_text().strip() if worker.log_path else ""
    assert log.splitlines() == [
        "shopstream: invalid setting SHOP_TOPIC_PARTITIONS: must be a whole number from 1 to "
        "1024 (got 'many')"
    ]


async def test_ready_means_the_first_admin_can_log_in_at_once(workers: WorkerFactory) -> None:
    """A deploy script's order on two workers: wait for a worker's /ready, then log in
    through it as the first admin, at once: never refused."""
    email, password = "ready-admin@shop.example", "ready admin password"
    settings = {"SHOP_ADMIN_EMAIL": email, "SHOP_ADMIN_PASSWORD": password,
                "SHOP_PASSWORD_HASH_COST": "light"}
    started = [workers.start(name, **settings) for name in ("a", "b")]

    async def deploy(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], int, Any]:
        status, ready, _ = await wait_for_json(http, f"{url}/ready",
                                               lambda status, body: status == 200, within=90)
        assert status == 200, ready
        async with http.post(f"{url}/api/auth/login",
                             json={"email": email, "password": password}) as answer:
            return ready, answer.status, await answer.json()

    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(deploy(http, worker.url) for worker in started))
    for ready, status, tokens in answers:
        assert ready["first_admin"] is True and ready["kafka"]["topics"] is True
        assert status == 200, tokens
        assert tokens["token_type"] == "bearer"
