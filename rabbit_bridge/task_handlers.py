"""What each of the shop's tasks does when its message arrives, and why doing it twice is safe.

Every handler only asks the Kafka side to do the work (a message to the agent that owns the
state), so the work happens where the state lives, once per partition, under the replay
guard. The agents are imported when a task runs: this module is loaded with ``app.py``,
before the agents exist.

- ``expire-orders``: an ``ExpirySweep`` to every orders partition; each owner expires its
  orders past their deadline. Idempotent by state: an expired order stays expired, and the
  saga ignores an expiry of an order that has settled.
- ``promotion-windows``: ``agents.promotions.apply_promotion_windows()`` asks the promotions
  agent to re-check the codes whose window opened or closed, at the time it names; a
  repeated check finds the status already right and changes nothing. Until the promotions
  module exists the task succeeds doing nothing.
- ``daily-report``: asks for the report of the day before the run's period (the period, not
  the clock, names the day, so a late retry reports the same day); the report agent writes
  the day's totals as they are, so a repeat writes the same report, or a more complete one.
- ``popularity``: asks the report agent to recompute the popular products from the
  confirmed orders of the last days: the same totals give the same list.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime, timedelta

from config.settings import Settings
from models.tasks import DAILY_REPORT, EXPIRE_ORDERS, POPULARITY, PROMOTION_WINDOWS, shop_tasks
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.tasks import Handler, TaskRun, TaskWorkers

__all__ = ["SHOP_HANDLERS", "daily_report", "expire_orders", "popularity",
           "promotion_windows", "shop_task_workers"]

log = logging.getLogger(__name__)


async def expire_orders(run: TaskRun) -> str:
    """Ask every orders partition's owner to expire its overdue orders."""
    from agents.orders import request_expiry_sweep

    partitions = await request_expiry_sweep()
    return f"expiry sweep sent to {partitions} partitions"


async def promotion_windows(run: TaskRun) -> str:
    """Activate and expire the promotions whose window opened or closed."""
    try:
        promotions = importlib.import_module("agents.promotions")
    except ModuleNotFoundError as exc:
        if exc.name != "agents.promotions":
            raise
        log.debug("promotion-windows: no promotions module yet; nothing to do")
        return "no promotions module"
    changed = await promotions.apply_promotion_windows()
    return f"{changed} promotion(s) opened or closed"


async def daily_report(run: TaskRun) -> str:
    """Ask for the sales report of the day before the run's period."""
    from agents.reports import request_daily_report

    day = (_period_start(run) - timedelta(days=1)).date().isoformat()
    await request_daily_report(day)
    return f"report of {day} requested"


async def popularity(run: TaskRun) -> str:
    """Ask for the popular products to be recomputed as of the run's period."""
    from agents.reports import request_popularity

    day = _period_start(run).date().isoformat()
    await request_popularity(day)
    return f"popular products as of {day} requested"


def _period_start(run: TaskRun) -> datetime:
    """Return the start of the run's period (from the message; else from its id)."""
    raw = run.body.get("period_start") or run.period.partition(":")[2].replace("Z", "+00:00")
    return datetime.fromisoformat(str(raw))


#: The handler of each of the shop's tasks (models.tasks.shop_tasks).
SHOP_HANDLERS: dict[str, Handler] = {
    EXPIRE_ORDERS: expire_orders,
    PROMOTION_WINDOWS: promotion_windows,
    DAILY_REPORT: daily_report,
    POPULARITY: popularity,
}


def shop_task_workers(settings: Settings, rabbit: RabbitConnection,
                      publisher: RabbitPublisher) -> TaskWorkers:
    """Return the task workers of the shop's tasks, scheduled as ``settings`` say."""
    tasks = shop_tasks(expire_orders_every=settings.task_expire_orders_every,
                       promotion_windows_every=settings.task_promotion_windows_every,
                       popularity_every=settings.task_popularity_every,
                       daily_report_cron=settings.task_daily_report_cron)
    return TaskWorkers(rabbit, publisher, tasks.values(), SHOP_HANDLERS)
