"""The task scheduler: Faust timers and crontabs on the leader publish each task to shop.tasks.

Only the leader of the worker group publishes (``on_leader=True``); each tick publishes the
task with the message id ``<task>:<period start>`` (:func:`models.tasks.period_id`), so two
ticks in one period, or a new leader ticking in the period its predecessor already
published, give a duplicate the task consumers skip. The publisher confirms every message
or keeps it in its durable outbox while RabbitMQ is down, so no tick is lost.
The schedules are settings (``SHOP_TASK_*``); the work is done by whichever worker consumes
the task (``rabbit_bridge/tasks.py``).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from app import app
from models.base import utcnow
from models.tasks import DAILY_REPORT, POPULARITY, PROMOTION_WINDOWS, next_run
from rabbit_bridge.tasks import publish_run

__all__ = ["publish_task", "published", "schedule_report"]

#: Per task, what this worker's scheduler published (only the leader publishes).
published: dict[str, dict[str, Any]] = {}


def publish_task(name: str) -> str:
    """Publish the run of task ``name`` for the current period; return its message id."""
    now = utcnow()
    services = app.services
    period = publish_run(services.publisher, services.task_workers.tasks[name], now,
                         by=app.settings.canonical_url)
    mine = published.setdefault(name, {"count": 0, "periods": 0, "last_period": None,
                                       "last_published_at": None})
    mine["count"] += 1
    if mine["last_period"] != period:
        mine["periods"] += 1
    mine["last_period"], mine["last_published_at"] = period, now.isoformat()
    return period


def schedule_report() -> dict[str, dict[str, Any]]:
    """Return each task's schedule, next run, and what this worker published."""
    now = utcnow()
    return {name: {"schedule": task.schedule, "description": task.description,
                   "next_run": next_run(task, now).isoformat(),
                   "published_here": published.get(name)}
            for name, task in app.services.task_workers.tasks.items()}


@app.timer(app.settings.task_promotion_windows_every, on_leader=True,
           name="scheduler.promotion-windows")
async def schedule_promotion_windows() -> None:
    """Publish the promotion-windows task."""
    publish_task(PROMOTION_WINDOWS)


@app.timer(app.settings.task_popularity_every, on_leader=True, name="scheduler.popularity")
async def schedule_popularity() -> None:
    """Publish the popularity task."""
    publish_task(POPULARITY)


@app.crontab(app.settings.task_daily_report_cron, timezone=UTC, on_leader=True)
async def schedule_daily_report() -> None:
    """Publish the daily-report task (for the previous day)."""
    publish_task(DAILY_REPORT)
