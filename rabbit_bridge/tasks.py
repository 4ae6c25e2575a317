"""Task workers: a durable queue per task, retries with exponential backoff, a dead-letter queue.

The topology of task ``name`` (declared by its consumer, all durable)::

    shop.tasks --name--> tasks.<name>  (x-dead-letter-exchange: shop.tasks.dead)
                              |  a handler fails, attempt n < max: the consumer publishes a
                              |  copy (x-attempt: n + 1) to the retry queue of its delay
                              v
                         tasks.<name>.retry.<delay>ms  (x-message-ttl: delay,
                              |                      x-dead-letter-exchange: shop.tasks,
                              |  the TTL runs out      x-dead-letter-routing-key: name)
                              +-----------------------> back to tasks.<name>
    the last attempt fails: rejected without requeue -> shop.tasks.dead --name--> tasks.<name>.dead

Why a retry queue per delay and not one delay queue with a per-message ``expiration``:
RabbitMQ only expires messages at the head of a queue, so a message waiting 30 s would hold
up one behind it that should wait 1 s. In a queue whose messages all have the same TTL the
head always expires first, so each delay is exact, and the whole mechanism is RabbitMQ's own
TTL and dead-lettering (no plugin, no timers in the worker; a waiting retry survives a worker
restart). The delay is in the queue's name, since a queue's arguments cannot change.

The attempt number travels in the ``x-attempt`` header, the run's id (``<task>:<period>``)
in ``x-period``; attempt ``n`` has the message id ``<period>#n``, so a duplicate of the same
attempt is skipped by the consumer while the retries themselves are not. The retry copy is
confirmed (or safe in the publisher's outbox) before the failed delivery is acknowledged.
Handlers are idempotent (see ``agents/task_handlers.py``), because a delivery can
be repeated after a worker restart.

Counts and the last run of each task are kept per worker, in memory (also in ``/metrics``:
``shop_task_attempts_total{task,outcome}``, ``shop_task_duration_seconds{task}``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from mode import Service, ServiceT
from prometheus_client import Counter, Histogram

from models.base import utcnow
from models.tasks import (
    ATTEMPT_HEADER,
    DEAD_LETTER_EXCHANGE,
    TASK_HEADER,
    Outcome,
    TaskDefinition,
    after_failure,
    attempt_message_id,
    backoff_delay,
    dead_letter_queue,
    is_stale,
    period_id,
    period_start,
    retry_queue,
    task_queue,
)
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.consumer import QueueConsumer
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.topology import TASKS_EXCHANGE, declare_exchange

__all__ = ["PERIOD_HEADER", "TaskRun", "TaskStats", "TaskWorkers", "declare_task", "publish_run"]

log = logging.getLogger(__name__)

ATTEMPTS = Counter("shop_task_attempts_total",
                   "Task attempts by task and outcome (done, retry, dead, stale)",
                   ["task", "outcome"])
DURATION = Histogram("shop_task_duration_seconds", "How long task attempts took", ["task"])

#: Header that carries the run's id, ``<task>:<period start>``.
PERIOD_HEADER = "x-period"
#: How many recent runs each task remembers.
RECENT_RUNS = 20


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One delivery of a task to its handler: which run, which attempt, and the message body."""

    task: str
    period: str
    attempt: int
    body: dict[str, Any]


Handler = Callable[[TaskRun], Awaitable[str | None]]


@dataclass
class TaskStats:
    """What this worker saw of one task: counts and its last runs."""

    done: int = 0
    retries: int = 0
    dead_lettered: int = 0
    stale: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_RUNS))

    @property
    def failures(self) -> int:
        """Return how many attempts failed (retried or dead-lettered)."""
        return self.retries + self.dead_lettered

    def as_dict(self) -> dict[str, Any]:
        """Return the counts and runs, newest run first."""
        runs = list(reversed(self.recent))
        return {"done": self.done, "failures": self.failures, "retries": self.retries,
                "dead_lettered": self.dead_lettered, "stale": self.stale,
                "last_run": runs[0] if runs else None, "recent_runs": runs}


def publish_run(publisher: RabbitPublisher, task: TaskDefinition, now: datetime, *,
                by: str = "") -> str:
    """Publish the run of ``task`` for the period of ``now`` to shop.tasks; return its id."""
    period = period_id(task, now)
    body = {"task": task.name, "period": period,
            "period_start": period_start(task, now).isoformat(),
            "published_at": now.isoformat(), "published_by": by}
    publisher.publish(TASKS_EXCHANGE, task.name, body, message_id=period,
                      headers={TASK_HEADER: task.name, PERIOD_HEADER: period, ATTEMPT_HEADER: 1})
    return period


async def declare_task(channel: AbstractChannel, task: TaskDefinition) -> AbstractQueue:
    """Declare ``task``'s queue, retry queues, dead-letter exchange and queue; return its queue."""
    dead_exchange = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT,
                                                   durable=True)
    tasks_exchange = await declare_exchange(channel, TASKS_EXCHANGE)
    dead = await channel.declare_queue(dead_letter_queue(task.name), durable=True)
    await dead.bind(dead_exchange, task.name)
    for delay in sorted(set(task.retry_delays)):
        await channel.declare_queue(retry_queue(task.name, delay), durable=True, arguments={
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": TASKS_EXCHANGE,
            "x-dead-letter-routing-key": task.name,
        })
    queue = await channel.declare_queue(task_queue(task.name), durable=True, arguments={
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": task.name,
    })
    await queue.bind(tasks_exchange, task.name)
    return queue


class TaskWorkers(Service):
    """Consumes every task's queue and runs its handler, with retries and a dead-letter queue."""

    def __init__(self, connection: RabbitConnection, publisher: RabbitPublisher,
                 tasks: Iterable[TaskDefinition] = (),
                 handlers: Mapping[str, Handler] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rabbit = connection
        self.publisher = publisher
        self.tasks: dict[str, TaskDefinition] = {}
        self.handlers: dict[str, Handler] = {}
        self.stats: dict[str, TaskStats] = {}
        self.consumers: dict[str, QueueConsumer] = {}
        self._inspect: AbstractChannel | None = None
        for task in tasks:
            self.register(task, (handlers or {})[task.name])

    def register(self, task: TaskDefinition, handler: Handler) -> None:
        """Add ``task`` with its ``handler`` (before the service starts)."""
        if self.consumers:
            raise RuntimeError("register tasks before the task workers start")
        self.tasks[task.name] = task
        self.handlers[task.name] = handler
        self.stats[task.name] = TaskStats()

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        """Make one queue consumer per task (started and stopped with this service)."""
        for name, task in self.tasks.items():
            self.consumers[name] = QueueConsumer(
                self.rabbit, name=task_queue(name), prefetch=4,
                declare=partial(declare_task, task=task), handle=partial(self._run, task))
        return list(self.consumers.values())

    async def _run(self, task: TaskDefinition, message: AbstractIncomingMessage) -> None:
        """Run one delivery of ``task``; retry it later or dead-letter it if it fails."""
        headers = dict(message.headers or {})
        attempt = _int(headers.get(ATTEMPT_HEADER), 1)
        period = str(headers.get(PERIOD_HEADER) or message.message_id or "")
        body = _json(message.body)
        run = TaskRun(task.name, period, attempt, body)
        started, clock = utcnow(), time.monotonic()
        if is_stale(task, _time(body.get("period_start"), started), started):
            self._record(run, Outcome.STALE, started, 0.0, summary="passed over: too old")
            return
        try:
            summary = await self.handlers[task.name](run)
        except Exception as exc:
            outcome = after_failure(task, attempt)
            self._record(run, outcome, started, time.monotonic() - clock,
                         error=f"{type(exc).__name__}: {exc}")
            if outcome is Outcome.DEAD:
                log.error("task %s (%s) failed attempt %d of %d; to %s", task.name, period,
                          attempt, task.max_attempts, dead_letter_queue(task.name))
                raise  # rejected without requeue: the queue dead-letters it
            delay = backoff_delay(task, attempt)
            log.warning("task %s (%s) failed attempt %d of %d (%s: %s); again in %.1f s",
                        task.name, period, attempt, task.max_attempts, type(exc).__name__,
                        exc, delay)
            self.publisher.publish(
                "", retry_queue(task.name, delay), message.body,
                message_id=attempt_message_id(period, attempt + 1),
                headers={**headers, TASK_HEADER: task.name, PERIOD_HEADER: period,
                         ATTEMPT_HEADER: attempt + 1, "x-last-error": str(exc)[:500]})
            await self.publisher.flush()  # confirmed or in the outbox before the ack
            return
        self._record(run, Outcome.DONE, started, time.monotonic() - clock, summary=summary)

    def _record(self, run: TaskRun, outcome: Outcome, started: datetime, duration: float, *,
                summary: str | None = None, error: str | None = None) -> None:
        ATTEMPTS.labels(run.task, outcome.value).inc()
        DURATION.labels(run.task).observe(duration)
        stats = self.stats[run.task]
        if outcome is Outcome.DONE:
            stats.done += 1
        elif outcome is Outcome.RETRY:
            stats.retries += 1
        elif outcome is Outcome.DEAD:
            stats.dead_lettered += 1
        else:
            stats.stale += 1
        stats.recent.append({"run": run.period, "attempt": run.attempt, "outcome": outcome.value,
                             "at": started.isoformat(), "duration_s": round(duration, 4),
                             "summary": summary, "error": error})

    async def depths(self) -> dict[str, dict[str, int | None]]:
        """Return, per task, the messages in its queue, retry queues and dead-letter queue."""
        found: dict[str, dict[str, int | None]] = {}
        for name, task in self.tasks.items():
            retrying: int | None = 0
            for delay in sorted(set(task.retry_delays)):
                count = await self._message_count(retry_queue(name, delay))
                retrying = None if count is None or retrying is None else retrying + count
            found[name] = {"queued": await self._message_count(task_queue(name)),
                           "retrying": retrying,
                           "dead": await self._message_count(dead_letter_queue(name))}
        return found

    async def _message_count(self, queue: str) -> int | None:
        """Return how many messages ``queue`` holds (a passive declare), None if unknown."""
        connection = self.rabbit.connection
        if connection is None or not self.rabbit.is_connected:
            return None
        try:
            if self._inspect is None or self._inspect.is_closed:
                self._inspect = await connection.channel()
            declared = await self._inspect.declare_queue(queue, passive=True)
        except Exception as exc:  # a missing queue closes the channel: open another next time
            log.debug("cannot count %s: %s: %s", queue, type(exc).__name__, exc)
            self._inspect = None
            return None
        result = declared.declaration_result
        return int(result.message_count) if result.message_count is not None else None

    def report(self) -> dict[str, dict[str, Any]]:
        """Return every task's definition and this worker's counts and runs."""
        return {name: {"max_attempts": task.max_attempts,
                       "retry_delays_s": task.retry_delays, **self.stats[name].as_dict()}
                for name, task in self.tasks.items()}

    async def on_stop(self) -> None:
        """Close the channel used for counting."""
        if self._inspect is not None and not self._inspect.is_closed:
            await self._inspect.close()
        self._inspect = None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _time(value: Any, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(value)) if value else default
    except ValueError:
        return default


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

