"""The shop's task handlers: which day a report names, and a missing promotions module."""

from __future__ import annotations

import sys
import types

import pytest

from rabbit_bridge.task_handlers import SHOP_HANDLERS, daily_report, promotion_windows
from rabbit_bridge.tasks import TaskRun


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **functions: object) -> None:
    """Put a stand-in module named ``name`` with ``functions`` in ``sys.modules``."""
    module = types.ModuleType(name)
    for attribute, value in functions.items():
        setattr(module, attribute, value)
    monkeypatch.setitem(sys.modules, name, module)


async def test_the_daily_report_names_the_day_before_its_period_however_late_it_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def request_daily_report(day: str) -> None:
        asked.append(day)

    fake_module(monkeypatch, "agents.reports", request_daily_report=request_daily_report)
    period = "daily-report:2026-03-15T00:05:00Z"
    await daily_report(TaskRun("daily-report", period, 1, {}))
    await daily_report(TaskRun("daily-report", period, 5,  # a retry, hours later
                               {"period_start": "2026-03-15T00:05:00+00:00"}))
    assert asked == ["2026-03-14", "2026-03-14"]


async def test_promotion_windows_succeed_doing_nothing_without_the_promotions_module(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "agents.promotions", None)  # "no such module"
    run = TaskRun("promotion-windows", "promotion-windows:2026-03-15T00:00:05Z", 1, {})
    assert await promotion_windows(run) == "no promotions module"


async def test_promotion_windows_call_the_promotions_module(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def apply_promotion_windows() -> int:
        return 2

    fake_module(monkeypatch, "agents.promotions",
                apply_promotion_windows=apply_promotion_windows)
    run = TaskRun("promotion-windows", "promotion-windows:2026-03-15T00:00:05Z", 1, {})
    assert await promotion_windows(run) == "2 promotion(s) opened or closed"


def test_every_shop_task_has_a_handler() -> None:
    assert set(SHOP_HANDLERS) == {"expire-orders", "promotion-windows", "daily-report",
                                  "popularity"}
