"""What each of the shop's tasks does when its message arrives, and why doing it twice is safe.

Every handler only asks the Kafka side to do the work (a message to the agent that owns the
state), so the work happens where the state lives, once per partition, under the replay
guard. ``wiring.py`` gives :data:`SHOP_HANDLERS` to the task workers (rabbit_bridge/tasks.py),
which run them and know nothing of the agents.

- ``promotion-windows``: ``agents.promotions.apply_promotion_windows()`` asks the promotions
  agent to re-check the codes whose window opened or closed, at the time it names; a
  repeated check finds the status already right and changes nothing.
- ``daily-report``: asks for the report of the day before the run's period (the period, not
  the clock, names the day, so a late retry reports the same day); the report agent writes
  the day's totals as they are, so a repeat writes the same report, or a more complete one.
- ``popularity``: asks the report agent to recompute the popular products from the
  confirmed orders of the last days: the same totals give the same list.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.promotions import apply_promotion_windows
from agents.reports import request_daily_report, request_popularity
from models.tasks import DAILY_REPORT, POPULARITY, PROMOTION_WINDOWS
from rabbit_bridge.tasks import Handler, TaskRun

__all__ = ["SHOP_HANDLERS", "daily_report", "popularity", "promotion_windows"]


async def promotion_windows(run: TaskRun) -> str:
    """Activate and expire the promotions whose window opened or closed."""
    changed = await apply_promotion_windows()
    return f"{changed} promotion(s) opened or closed"


async def daily_report(run: TaskRun) -> str:
    """Ask for the sales report of the day before the run's period."""
    day = (_period_start(run) - timedelta(days=1)).date().isoformat()
    await request_daily_report(day)
    return f"report of {day} requested"


async def popularity(run: TaskRun) -> str:
    """Ask for the popular products to be recomputed as of the run's period."""
    day = _period_start(run).date().isoformat()
    await request_popularity(day)
    return f"popular products as of {day} requested"


def _period_start(run: TaskRun) -> datetime:
    """Return the start of the run's period (from the message; else from its id)."""
    raw = run.body.get("period_start") or run.period.partition(":")[2].replace("Z", "+00:00")
    return datetime.fromisoformat(str(raw))


#: The handler of each of the shop's tasks (models.tasks.shop_tasks).
SHOP_HANDLERS: dict[str, Handler] = {
    PROMOTION_WINDOWS: promotion_windows,
    DAILY_REPORT: daily_report,
    POPULARITY: popularity,
}
