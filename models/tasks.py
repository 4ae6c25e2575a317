"""Background tasks: what runs when, how often it is tried, and the names it travels under.

Pure rules, no I/O. A task is published to RabbitMQ's ``shop.tasks`` exchange (routing key =
its name) once per period by the scheduler (``agents/scheduler.py``), with the message id
``"<task>:<period start>"`` so a repeated tick or a new leader publishes a duplicate that
consumers recognise. A failed attempt ``n`` waits :func:`backoff_delay` seconds in the retry
queue of that delay; after ``max_attempts`` failures it goes to the task's dead-letter queue
(``rabbit_bridge/tasks.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from croniter import croniter

__all__ = [
    "ATTEMPT_HEADER",
    "DAILY_REPORT",
    "DEAD_LETTER_EXCHANGE",
    "POPULARITY",
    "PROMOTION_WINDOWS",
    "TASK_HEADER",
    "Outcome",
    "TaskDefinition",
    "after_failure",
    "attempt_message_id",
    "backoff_delay",
    "dead_letter_queue",
    "is_stale",
    "next_run",
    "period_id",
    "period_start",
    "retry_queue",
    "shop_tasks",
    "task_queue",
]

#: Header that carries the attempt number (1 for the first delivery).
ATTEMPT_HEADER = "x-attempt"
#: Header that carries the task's name (also the routing key).
TASK_HEADER = "x-task"
#: The exchange a task queue dead-letters to; it routes by task name to ``tasks.<name>.dead``.
DEAD_LETTER_EXCHANGE = "shop.tasks.dead"

#: The shop's tasks.
PROMOTION_WINDOWS = "promotion-windows"
DAILY_REPORT = "daily-report"
POPULARITY = "popularity"


class Outcome(StrEnum):
    """What becomes of a task message after an attempt."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A periodic task: its name, when it runs, and how failures are retried.

    ``every`` (seconds) or ``cron`` (a crontab line, UTC) says when; a failed attempt ``n``
    is tried again after ``backoff_base * 2 ** (n - 1)`` seconds (at most ``backoff_max``),
    until ``max_attempts`` attempts have failed. A run older than ``stale_after`` seconds is
    passed over (a later run does the same work); None: every run is done, however late.
    """

    name: str
    every: float | None = None
    cron: str | None = None
    max_attempts: int = 5
    backoff_base: float = 2.0
    backoff_max: float = 3600.0
    stale_after: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"task {self.name!r}: give exactly one of every= and cron=")
        if self.every is not None and self.every <= 0:
            raise ValueError(f"task {self.name!r}: every must be positive")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"task {self.name!r}: {self.cron!r} is not a crontab line")
        if self.max_attempts < 1:
            raise ValueError(f"task {self.name!r}: max_attempts must be at least 1")
        if not 0 < self.backoff_base <= self.backoff_max:
            raise ValueError(f"task {self.name!r}: need 0 < backoff_base <= backoff_max")

    @property
    def schedule(self) -> str:
        """Return the schedule in words, e.g. ``every 1 s`` or ``cron 5 0 * * * (UTC)``."""
        if self.every is not None:
            return f"every {self.every:g} s"
        return f"cron {self.cron} (UTC)"

    @property
    def retry_delays(self) -> list[float]:
        """Return the delay after each failed attempt that is tried again (seconds)."""
        return [backoff_delay(self, attempt) for attempt in range(1, self.max_attempts)]


def backoff_delay(task: TaskDefinition, attempt: int) -> float:
    """Return how long to wait after failed attempt ``attempt`` (1-based) before the next."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    exponent = min(attempt - 1, 60)  # 2**60 s is beyond any backoff_max
    return min(task.backoff_base * 2.0 ** exponent, task.backoff_max)


def after_failure(task: TaskDefinition, attempt: int) -> Outcome:
    """Return whether failed attempt ``attempt`` is tried again or dead-lettered."""
    return Outcome.RETRY if attempt < task.max_attempts else Outcome.DEAD


def is_stale(task: TaskDefinition, started: datetime, now: datetime) -> bool:
    """Return True if the run of the period that ``started`` is too old to be worth doing."""
    return task.stale_after is not None and (now - started).total_seconds() > task.stale_after


def period_start(task: TaskDefinition, now: datetime) -> datetime:
    """Return the start of the period ``now`` falls in (UTC, whole seconds or cron times)."""
    now = now.astimezone(UTC)
    if task.every is not None:
        stamp = math.floor(now.timestamp() / task.every) * task.every
        return datetime.fromtimestamp(stamp, UTC)
    assert task.cron is not None
    # croniter's get_prev from an exact match returns the previous match: step past it.
    base = now.replace(microsecond=0) if now.microsecond else now
    prev = croniter(task.cron, base.timestamp() + 1).get_prev(float)
    return datetime.fromtimestamp(prev, UTC)


def period_id(task: TaskDefinition, now: datetime) -> str:
    """Return the message id of ``task``'s run in the period of ``now``: ``task:ISO start``."""
    start = period_start(task, now)
    text = start.isoformat(timespec="milliseconds" if start.microsecond else "seconds")
    return f"{task.name}:{text.replace('+00:00', 'Z')}"


def next_run(task: TaskDefinition, now: datetime) -> datetime:
    """Return when the scheduler next publishes ``task`` after ``now`` (UTC)."""
    now = now.astimezone(UTC)
    if task.every is not None:
        start = period_start(task, now).timestamp()
        return datetime.fromtimestamp(start + task.every, UTC)
    assert task.cron is not None
    return datetime.fromtimestamp(croniter(task.cron, now.timestamp()).get_next(float), UTC)


def attempt_message_id(period: str, attempt: int) -> str:
    """Return the message id of attempt ``attempt`` of the run ``period`` (the first: itself)."""
    return period if attempt <= 1 else f"{period}#{attempt}"


def task_queue(name: str) -> str:
    """Return the durable queue of task ``name``."""
    return f"tasks.{name}"


def dead_letter_queue(name: str) -> str:
    """Return the dead-letter queue of task ``name``."""
    return f"tasks.{name}.dead"


def retry_queue(name: str, delay: float) -> str:
    """Return the retry queue of task ``name`` whose messages wait ``delay`` seconds.

    The delay is part of the name: a queue's TTL cannot change, so a new backoff gets new
    queues instead of a declaration RabbitMQ refuses.
    """
    return f"tasks.{name}.retry.{round(delay * 1000)}ms"


def shop_tasks(*, promotion_windows_every: float, popularity_every: float,
               daily_report_cron: str) -> dict[str, TaskDefinition]:
    """Return the shop's tasks by name, with their schedules from the settings."""
    tasks = [
        TaskDefinition(PROMOTION_WINDOWS, every=promotion_windows_every, max_attempts=5,
                       backoff_base=1.0, backoff_max=60.0, stale_after=300.0,
                       description="activate and expire promotions whose window opened "
                                   "or closed"),
        TaskDefinition(DAILY_REPORT, cron=daily_report_cron, max_attempts=6,
                       backoff_base=30.0, backoff_max=3600.0,
                       description="the previous day's sales report (UTC)"),
        TaskDefinition(POPULARITY, every=popularity_every, max_attempts=4,
                       backoff_base=10.0, backoff_max=600.0, stale_after=3600.0,
                       description="recompute popular products from confirmed orders"),
    ]
    return {task.name: task for task in tasks}
