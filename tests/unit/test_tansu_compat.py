"""The Tansu fetch wait reaches the worker's consumer from SHOP_TANSU_FETCH_WAIT."""

from __future__ import annotations

import dataclasses

import pytest

from app import app
from config.settings import Settings
from runtime.tansu_compat import TansuConsumerThread


@pytest.mark.parametrize(("seconds", "expected_ms"), [(0.005, 5), (0.05, 50), (0.25, 250)])
async def test_the_consumer_waits_what_the_setting_says(
    monkeypatch: pytest.MonkeyPatch, seconds: float, expected_ms: int
) -> None:
    monkeypatch.setattr(app, "settings", dataclasses.replace(
        app.settings, kafka_compat="tansu", tansu_fetch_wait=seconds))
    thread = TansuConsumerThread(app.consumer, loop=app.loop, beacon=app.consumer.beacon)
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == expected_ms
    finally:
        await consumer.stop()


def test_the_default_is_the_measured_trade() -> None:
    assert round(Settings().tansu_fetch_wait * 1000) == 50
