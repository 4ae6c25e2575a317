"""The task scheduler's pure rules: backoff, period ids, the retry decision, queue names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from models.tasks import (
    DAILY_REPORT,
    PROMOTION_WINDOWS,
    Outcome,
    TaskDefinition,
    after_failure,
    attempt_message_id,
    backoff_delay,
    dead_letter_queue,
    is_stale,
    next_run,
    period_id,
    period_start,
    retry_queue,
    shop_tasks,
    task_queue,
)

FAST = TaskDefinition("fast", every=1.0, max_attempts=4, backoff_base=0.2, backoff_max=10.0)
DAILY = TaskDefinition("daily", cron="5 0 * * *")
AT = datetime(2026, 3, 14, 15, 9, 26, 535_000, tzinfo=UTC)


def test_backoff_doubles_from_the_base_and_stops_at_the_maximum() -> None:
    assert [backoff_delay(FAST, n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0]
    assert FAST.retry_delays == [0.2, 0.4, 0.8]
    with pytest.raises(ValueError):
        backoff_delay(FAST, 0)


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_never_shrinks_and_never_passes_the_maximum(attempt: int) -> None:
    assert backoff_delay(FAST, attempt) <= backoff_delay(FAST, attempt + 1) <= FAST.backoff_max


def test_a_failure_is_retried_until_max_attempts_then_dead() -> None:
    assert [after_failure(FAST, n) for n in range(1, 6)] == [
        Outcome.RETRY, Outcome.RETRY, Outcome.RETRY, Outcome.DEAD, Outcome.DEAD]
    once = TaskDefinition("once", every=1.0, max_attempts=1)
    assert after_failure(once, 1) is Outcome.DEAD and once.retry_delays == []


def test_the_period_id_is_the_same_within_a_period_and_new_after_it() -> None:
    every10 = TaskDefinition("sweep", every=10.0)
    start = datetime(2026, 3, 14, 15, 9, 20, tzinfo=UTC)
    ids = {period_id(every10, start + timedelta(seconds=s)) for s in (0, 3.2, 9.999)}
    assert ids == {"sweep:2026-03-14T15:09:20Z"}
    assert period_id(every10, start + timedelta(seconds=10)) == "sweep:2026-03-14T15:09:30Z"
    assert period_id(FAST.__class__("ms", every=0.5), AT) == "ms:2026-03-14T15:09:26.500Z"


def test_a_cron_period_starts_at_its_last_cron_time() -> None:
    assert period_start(DAILY, AT) == datetime(2026, 3, 14, 0, 5, tzinfo=UTC)
    exactly = datetime(2026, 3, 14, 0, 5, tzinfo=UTC)
    assert period_start(DAILY, exactly) == exactly
    assert period_start(DAILY, exactly - timedelta(microseconds=1)) == exactly - timedelta(days=1)
    assert period_id(DAILY, AT) == "daily:2026-03-14T00:05:00Z"


def test_the_period_id_does_not_depend_on_the_time_zone_of_now() -> None:
    eastern = AT.astimezone(datetime(2026, 1, 1, tzinfo=UTC).astimezone().tzinfo)
    assert period_id(DAILY, eastern) == period_id(DAILY, AT)
    assert period_id(FAST, eastern) == period_id(FAST, AT)


def test_next_run_follows_the_schedule() -> None:
    assert next_run(FAST, AT) == datetime(2026, 3, 14, 15, 9, 27, tzinfo=UTC)
    assert next_run(DAILY, AT) == datetime(2026, 3, 15, 0, 5, tzinfo=UTC)


def test_retries_get_their_own_message_ids() -> None:
    assert attempt_message_id("fast:2026-03-14T15:09:26Z", 1) == "fast:2026-03-14T15:09:26Z"
    assert attempt_message_id("fast:2026-03-14T15:09:26Z", 3) == "fast:2026-03-14T15:09:26Z#3"


def test_queue_names() -> None:
    assert task_queue("popularity") == "tasks.popularity"
    assert dead_letter_queue("popularity") == "tasks.popularity.dead"
    assert retry_queue("popularity", 0.2) == "tasks.popularity.retry.200ms"


@pytest.mark.parametrize("bad", [
    {"every": None, "cron": None}, {"every": 1.0, "cron": "* * * * *"}, {"every": 0.0},
    {"cron": "not a cron"}, {"every": 1.0, "max_attempts": 0},
    {"every": 1.0, "backoff_base": 5.0, "backoff_max": 1.0},
])
def test_bad_definitions_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TaskDefinition("bad", **bad)  # type: ignore[arg-type]


def test_the_shop_tasks_take_their_schedules_from_the_settings() -> None:
    settings = Settings(task_promotion_windows_every=2.5, task_daily_report_cron="0 1 * * *")
    tasks = shop_tasks(promotion_windows_every=settings.task_promotion_windows_every,
                       popularity_every=settings.task_popularity_every,
                       daily_report_cron=settings.task_daily_report_cron)
    assert set(tasks) == {"promotion-windows", "daily-report", "popularity"}
    assert tasks[PROMOTION_WINDOWS].every == 2.5
    assert tasks[DAILY_REPORT].cron == "0 1 * * *"
    assert all(task.max_attempts >= 2 for task in tasks.values())


def test_a_bad_cron_setting_names_its_variable() -> None:
    from config import ConfigError

    with pytest.raises(ConfigError, match="SHOP_TASK_DAILY_REPORT_CRON"):
        Settings.from_env({"SHOP_TASK_DAILY_REPORT_CRON": "every day"})
    assert Settings.from_env({"SHOP_TASK_EXPIRE_ORDERS_EVERY": "0.5"}).task_expire_orders_every \
        == 0.5


def test_a_run_older_than_stale_after_is_passed_over() -> None:
    sweep = TaskDefinition("sweep", every=1.0, stale_after=300.0)
    start = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
    assert not is_stale(sweep, start, start + timedelta(seconds=300))
    assert is_stale(sweep, start, start + timedelta(seconds=301))
    assert not is_stale(DAILY, start, start + timedelta(days=30))
