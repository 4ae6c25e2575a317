"""The worker's root logger: Faust's start-up spinner must not leave it at DEBUG."""

from __future__ import annotations

import io
import logging

import faust
from faust.utils.terminal.spinners import SpinnerHandler

from runtime.worker import ShopWorker, settle_root_logger


def worker(loglevel: str) -> ShopWorker:
    app = faust.App("worker-logging-test", autodiscover=False)
    return ShopWorker(app, loglevel=loglevel, stdout=io.StringIO(), stderr=io.StringIO())


def spinners(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if isinstance(h, SpinnerHandler)]


async def test_at_fausts_default_level_debug_calls_stop_building_records_once_started(
        root_kept: logging.Logger) -> None:
    shop_worker = worker("warn")  # what `faust -A app worker` runs with
    shop_worker._setup_logging()
    # Faust's spinner: every record of every logger reaches the root logger's handlers.
    assert root_kept.level == logging.DEBUG
    assert spinners(root_kept)
    assert logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)

    await shop_worker.on_startup_finished()

    assert root_kept.level == logging.WARNING
    assert not spinners(root_kept)
    assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("faust.topics").isEnabledFor(logging.WARNING)


async def test_at_info_there_is_no_spinner_and_the_level_stays(
        root_kept: logging.Logger) -> None:
    shop_worker = worker("info")
    shop_worker._setup_logging()
    assert root_kept.level == logging.INFO
    assert not spinners(root_kept)

    await shop_worker.on_startup_finished()

    assert root_kept.level == logging.INFO
    assert logging.getLogger("aiokafka").isEnabledFor(logging.INFO)
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)


def test_settling_keeps_the_other_handlers(root_kept: logging.Logger) -> None:
    console = logging.StreamHandler(io.StringIO())
    root_kept.handlers[:] = [console, SpinnerHandler(None)]  # type: ignore[arg-type]
    root_kept.setLevel(logging.DEBUG)

    settle_root_logger(root_kept, logging.ERROR)

    assert root_kept.handlers == [console]
    assert root_kept.level == logging.ERROR


def test_the_app_starts_its_workers_as_shop_workers() -> None:
    from app import app

    assert app.conf.Worker is ShopWorker


def record(name: str, level: int, message: str, pathname: str = "shop.py") -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 1, message, None, None)


def test_the_console_keeps_state_changes_and_errors_and_drops_start_up_detail() -> None:
    from runtime.worker import StartupDetails

    shown = StartupDetails().filter
    assert shown(record("runtime.worker", logging.INFO, "worker ready in 5.0 s: 207 partitions"))
    assert shown(record("runtime.consumer", logging.INFO, "consumer: committed orders[1] 3->4"))
    assert shown(record("faust.tables.recovery", logging.WARNING, "a warning"))
    assert shown(record("aiokafka", logging.ERROR, "an error"))
    assert not shown(record("faust.tables.recovery", logging.INFO, "Highwater for active ..."))
    assert not shown(record("aiokafka.consumer", logging.INFO, "Joined group 'shopstream'"))
    assert not shown(record("rabbit_bridge.connection", logging.INFO, "[^--Rabbit]: Starting..."))
    assert not shown(record("runtime.tables", logging.INFO, "opening partition 1 for gen id 0",
                            pathname="/venv/lib/faust/stores/rocksdb.py"))
    assert not shown(record("rabbit_bridge.consumer", logging.INFO,
                            "consuming RabbitMQ queue logs.central"))
