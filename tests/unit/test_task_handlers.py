"""The shop's task handlers: which day a report names, and what each asks of the agents."""

from __future__ import annotations

import pytest

from agents import task_handlers
from agents.task_handlers import SHOP_HANDLERS, daily_report, promotion_windows
from rabbit_bridge.tasks import TaskRun


async def test_the_daily_report_names_the_day_before_its_period_however_late_it_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def request_daily_report(day: str) -> None:
        asked.append(day)

    monkeypatch.setattr(task_handlers, "request_daily_report", request_daily_report)
    period = "daily-report:2026-03-15T00:05:00Z"
    await daily_report(TaskRun("daily-report", period, 1, {}))
    await daily_report(TaskRun("daily-report", period, 5,  # a retry, hours later
                               {"period_start": "2026-03-15T00:05:00+00:00"}))
    assert asked == ["2026-03-14", "2026-03-14"]


async def test_promotion_windows_call_the_promotions_agent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def apply_promotion_windows() -> int:
        return 2

    monkeypatch.setattr(task_handlers, "apply_promotion_windows", apply_promotion_windows)
    run = TaskRun("promotion-windows", "promotion-windows:2026-03-15T00:00:05Z", 1, {})
    assert await promotion_windows(run) == "2 promotion(s) opened or closed"


def test_every_shop_task_has_a_handler() -> None:
    assert set(SHOP_HANDLERS) == {"promotion-windows", "daily-report", "popularity"}


def test_the_wiring_gives_every_task_its_handler_and_the_bridge_its_callbacks() -> None:
    import wiring
    from agents.notifications import broadcast_promotion, send_admin_alert
    from app import app

    assert wiring.app is app
    services = app.services
    assert set(services.task_workers.handlers) == set(SHOP_HANDLERS)
    assert services.central_logs.send_alert is send_admin_alert
    assert services.promotion_mail.broadcast is broadcast_promotion
