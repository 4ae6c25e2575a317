"""``GET /api/admin/tasks``: the task scheduler's queues, failures and last runs (admin).

Queue depths come from RabbitMQ (a passive declare answers a queue's message count), so
they are the same on every worker. Counts and runs are what the answering worker handled
since it started (kept in memory; ``X-Served-By`` names the worker), and the schedule's
``published_here`` is filled in on the leader only, which is the worker that publishes.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.scheduler import schedule_report
from app import app
from web.identity import require
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["TaskOut", "TaskRunOut", "TasksOut"]

SCOPE = ("queued, retrying and dead are RabbitMQ's counts; done, failures, retries, "
         "dead_lettered, stale and the runs are this worker's since it started (in memory); "
         "published_here is set on the leader, which publishes the tasks")


class TaskRunOut(BaseModel):
    """One attempt of a task on this worker."""

    run: str = Field(description="the run's id: <task>:<period start>")
    attempt: int
    outcome: str = Field(description="done, retry, dead or stale")
    at: str
    duration_s: float
    summary: str | None = None
    error: str | None = None


class PublishedOut(BaseModel):
    """What this worker's scheduler published of a task (the leader's)."""

    count: int
    periods: int
    last_period: str | None = None
    last_published_at: str | None = None


class TaskOut(BaseModel):
    """A task: its schedule, queues, and this worker's counts and runs."""

    name: str
    description: str
    schedule: str
    next_run: str
    max_attempts: int
    retry_delays_s: list[float]
    queued: int | None = Field(description="messages waiting in tasks.<name> (None: unknown)")
    retrying: int | None = Field(description="messages waiting in the task's retry queues")
    dead: int | None = Field(description="messages in the dead-letter queue tasks.<name>.dead")
    done: int
    failures: int
    retries: int
    dead_lettered: int
    stale: int
    last_run: TaskRunOut | None = None
    recent_runs: list[TaskRunOut]
    published_here: PublishedOut | None = None


class TasksOut(BaseModel):
    """Every task of the scheduler."""

    scope: str
    tasks: list[TaskOut]


async def tasks_overview() -> dict[str, Any]:
    """Return every task's schedule, queue depths, and this worker's counts and runs."""
    depths = await app.services.task_workers.depths()
    schedules = schedule_report()
    runs = app.services.task_workers.report()
    return {"scope": SCOPE, "tasks": [
        {"name": name, **schedules[name], **runs[name], **depths[name]}
        for name in app.services.task_workers.tasks]}


@endpoint("GET", "/api/admin/tasks", roles=("admin",), response=TasksOut)
class AdminTasksView(ShopView):
    """The task scheduler: per task its schedule, next run, queue depths, failures, runs."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        return self.json(await tasks_overview())
