"""Task workers on a real RabbitMQ: exponential backoff through the retry queues, the
dead-letter queue after N failures, duplicates skipped, and no task lost in an outage."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from models.base import utcnow
from models.tasks import ATTEMPT_HEADER, TaskDefinition, dead_letter_queue, retry_queue
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.tasks import PERIOD_HEADER, TaskRun, TaskWorkers, publish_run
from tests.integration.rabbit import PrivateRabbit

pytestmark = pytest.mark.integration

#: A task that exists only in this test: it fails on purpose.
FLAKY = TaskDefinition("test-flaky", every=3600.0, max_attempts=4, backoff_base=0.2,
                       backoff_max=10.0)
#: Succeeds on its third attempt.
HEALS = TaskDefinition("test-heals", every=3600.0, max_attempts=4, backoff_base=0.2)
#: Always succeeds; published every 0.2 s through an outage.
STEADY = TaskDefinition("test-steady", every=0.2, max_attempts=3, backoff_base=0.2)
#: How late a retry may come (s): a loaded 2-core machine, not the shop, decides it.
LATE_S = 3.0


@dataclass
class Attempts:
    """The attempts a handler saw: (monotonic time, run, attempt)."""

    seen: list[tuple[float, str, int]] = field(default_factory=list)
    fail_first: int = 10**6

    async def __call__(self, run: TaskRun) -> str:
        self.seen.append((time.monotonic(), run.period, run.attempt))
        if run.attempt <= self.fail_first:
            raise RuntimeError(f"attempt {run.attempt} fails on purpose")
        return "ok"


@dataclass
class Services:
    """A connection, a publisher and task workers of this test's tasks."""

    publisher: RabbitPublisher
    workers: TaskWorkers
    handlers: dict[str, Attempts]


@pytest.fixture
async def services(private_rabbit: PrivateRabbit, tmp_path: Path) -> AsyncIterator[Services]:
    """Start task workers for FLAKY, HEALS and STEADY against a private RabbitMQ."""
    handlers = {FLAKY.name: Attempts(), HEALS.name: Attempts(fail_first=2),
                STEADY.name: Attempts(fail_first=0)}
    connection = RabbitConnection(private_rabbit.url)
    publisher = RabbitPublisher(connection, tmp_path / "outbox.sqlite3")
    workers = TaskWorkers(connection, publisher, [FLAKY, HEALS, STEADY], handlers)
    for service in (connection, publisher, workers):
        await service.start()
    await until(lambda: all(c.consuming for c in workers.consumers.values()), 30)
    try:
        yield Services(publisher, workers, handlers)
    finally:
        for service in (workers, publisher, connection):
            await service.stop()


async def test_a_failing_task_backs_off_exponentially_then_is_dead_lettered(
        services: Services, private_rabbit: PrivateRabbit) -> None:
    period = publish_run(services.publisher, FLAKY, utcnow(), by="test")
    publish_run(services.publisher, FLAKY, utcnow(), by="test")  # a duplicate tick
    flaky = services.handlers[FLAKY.name]
    await until(lambda: services.workers.stats[FLAKY.name].dead_lettered == 1, 30)
    await asyncio.sleep(0.5)  # nothing more comes

    assert [attempt for _, _, attempt in flaky.seen] == [1, 2, 3, 4], "N tries, no more"
    assert {run for _, run, _ in flaky.seen} == {period}
    times = [at for at, _, _ in flaky.seen]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    print(f"retry gaps (s) for a base of {FLAKY.backoff_base} s: {gaps}; "
          f"expected {FLAKY.retry_delays}")
    # Never early (the retry queue holds each attempt its delay); late only by the machine's
    # load, so the upper bound is generous. Which delay each attempt waited is proven below by
    # the retry queues the dead letter went through, not by the clock.
    for gap, delay in zip(gaps, FLAKY.retry_delays, strict=True):
        assert delay - 0.02 <= gap <= delay + LATE_S

    stats = services.workers.report()[FLAKY.name]
    assert (stats["done"], stats["failures"], stats["retries"], stats["dead_lettered"]) == (
        0, 4, 3, 1)
    assert stats["last_run"]["outcome"] == "dead" and stats["last_run"]["attempt"] == 4
    depths = (await services.workers.depths())[FLAKY.name]
    assert depths == {"queued": 0, "retrying": 0, "dead": 1}

    connection = await aio_pika.connect(private_rabbit.url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(dead_letter_queue(FLAKY.name), passive=True)
        message = await dead.get(fail=True)
        assert message is not None
        headers = message.headers or {}
        print(f"dead letter: id {message.message_id}, headers {sorted(headers)}")
        assert headers[ATTEMPT_HEADER] == 4 and headers[PERIOD_HEADER] == period
        assert message.message_id == f"{period}#4"
        assert json.loads(message.body)["task"] == FLAKY.name
        x_death: list[dict[str, Any]] = headers["x-death"]  # type: ignore[assignment]
        deaths = {(d["queue"], d["reason"]): d["count"] for d in x_death}
        assert deaths[(f"tasks.{FLAKY.name}", "rejected")] == 1
        # each retry waited out its own delay's queue, once: 0.2 s, 0.4 s, 0.8 s
        assert {queue: n for (queue, reason), n in deaths.items() if reason == "expired"} == {
            retry_queue(FLAKY.name, delay): 1 for delay in FLAKY.retry_delays}
        await message.ack()


async def test_a_task_that_fails_twice_succeeds_on_its_third_attempt(
        services: Services) -> None:
    publish_run(services.publisher, HEALS, utcnow(), by="test")
    await until(lambda: services.workers.stats[HEALS.name].done == 1, 30)
    stats = services.workers.report()[HEALS.name]
    assert (stats["failures"], stats["retries"], stats["dead_lettered"]) == (2, 2, 0)
    assert [run["attempt"] for run in stats["recent_runs"]] == [3, 2, 1]
    assert (await services.workers.depths())[HEALS.name]["dead"] == 0


async def test_tasks_published_during_an_outage_all_run(services: Services,
                                                        private_rabbit: PrivateRabbit) -> None:
    periods: set[str] = set()
    start = utcnow()
    tick = 0

    async def publish(seconds: float) -> None:
        nonlocal tick
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # The scheduler's clock, stepped by the period so every tick is a new period.
            periods.add(publish_run(services.publisher, STEADY,
                                    start + timedelta(seconds=0.2 * tick), by="test"))
            tick += 1
            await asyncio.sleep(0.05)

    await publish(1.0)
    private_rabbit.stop_app()
    await publish(2.0)
    assert services.publisher.outbox_depth > 0, "ticks during the outage wait in the outbox"
    private_rabbit.start_app()
    await publish(1.0)
    steady = services.handlers[STEADY.name]
    await until(lambda: {run for _, run, _ in steady.seen} >= periods, 60)
    runs = [run for _, run, _ in steady.seen]
    print(f"{len(periods)} runs published ({tick} ticks), {len(runs)} handled, "
          f"{len(runs) - len(set(runs))} handled twice")
    assert set(runs) == periods


async def until(predicate: Callable[[], bool], within: float) -> None:
    """Wait until ``predicate()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)
