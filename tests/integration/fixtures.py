"""Fixtures that start real brokers and real workers.

- ``rabbit_url``: a running RabbitMQ (started, or installed and started, if missing).
- ``broker``: a fresh Tansu broker per test on a free port (starts in milliseconds; its memory
  storage means every test begins with empty topics).
- ``workers``: a factory that starts ShopStream workers against ``broker`` with their own web
  port and data dir, and stops them all after the test (printing their logs' tails). The
  workers of one test share a RabbitMQ virtual host of their own (``workers.vhost_url``):
  on a RabbitMQ shared with other test runs they would otherwise take each other's tasks.
  The virtual hosts come from ``vhosts`` (one made ahead, deleted in the background).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.devstack import (
    Broker,
    StackError,
    Worker,
    broker_env,
    delete_rabbit_vhost,
    ensure_rabbitmq,
    make_rabbit_vhost,
    start_tansu,
    start_worker,
    stop_rabbitmq,
)

RABBIT_URL = os.environ.get("SHOP_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def rabbit_url() -> Iterator[str]:
    """Return the URL of a running RabbitMQ; stop it afterwards only if we started it."""
    started = ensure_rabbitmq(RABBIT_URL, log=lambda line: print(f"[fixtures] {line}"))
    yield RABBIT_URL
    if started:
        stop_rabbitmq()


class VirtualHosts:
    """RabbitMQ virtual hosts for the tests of one test process, each test's its own.

    ``rabbitmqctl`` takes 0.6 s a call here (an Erlang VM starts each time), and a virtual
    host takes three calls: one is made while the test before runs, and a test's is deleted
    while the next one runs, one call at a time in a thread of their own.
    """

    def __init__(self, rabbit_url: str) -> None:
        self.rabbit_url = rabbit_url
        self._ctl = ThreadPoolExecutor(1, thread_name_prefix="rabbitmqctl")
        self._spare: Future[str] = self._ctl.submit(make_rabbit_vhost, rabbit_url)

    def take(self) -> str:
        """Return the URL of a fresh virtual host (and start making the next one)."""
        vhost_url = self._spare.result()
        self._spare = self._ctl.submit(make_rabbit_vhost, self.rabbit_url)
        return vhost_url

    def give_back(self, vhost_url: str) -> None:
        """Delete the virtual host at ``vhost_url`` (in the background)."""
        self._ctl.submit(delete_rabbit_vhost, vhost_url)

    def close(self) -> None:
        """Delete the spare and wait until every virtual host given back is deleted."""
        with contextlib.suppress(StackError):  # a spare that was not made: nothing to delete
            self.give_back(self._spare.result())
        self._ctl.shutdown(wait=True)


@pytest.fixture(scope="session")
def vhosts(rabbit_url: str) -> Iterator[VirtualHosts]:
    """Return the virtual hosts of this test process's tests."""
    supply = VirtualHosts(rabbit_url)
    yield supply
    supply.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Start a fresh Tansu broker for one test."""
    started = start_tansu(log_path=tmp_path / "tansu.log")
    yield started
    started.stop()


#: A worker's log lines worth showing when a test fails: warnings, errors, tracebacks.
_NOTABLE = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|Traceback|Error:")
NOTABLE_LINES = 80


class WorkerFactory:
    """Starts workers for one test and stops them all at its end."""

    def __init__(self, broker: Broker, rabbit_url: str, base_dir: Path,
                 vhost_url: str | None = None) -> None:
        self.broker = broker
        self.rabbit_url = rabbit_url
        self.vhost_url = vhost_url or rabbit_url
        self.base_dir = base_dir
        self.started: list[Worker] = []

    def start(self, name: str, **settings: str) -> Worker:
        """Start worker ``name``; ``settings`` are extra SHOP_* variables."""
        worker = start_worker(name, broker_env(self.broker), self.vhost_url, self.base_dir,
                              extra_env=settings)
        self.started.append(worker)
        return worker

    def restart(self, worker: Worker) -> Worker:
        """Start ``worker`` again with the same port and data dir."""
        return worker.start()

    def offset_trail(self, topic: str, partition: int, offset: int, limit: int = 12
                     ) -> list[str]:
        """Return what each worker's log says of ``topic[partition]`` around ``offset``: the
        commits that went past it (logged with SHOP_LOG_COMMITS=on) and the consumer's
        guards at work on that partition (runtime/consumer.py)."""
        name = f"{topic}[{partition}]"
        span = re.compile(re.escape(name) + r" (None|\d+)->(\d+)")
        trail: list[str] = []
        for worker in self.started:
            if not (worker.log_path and worker.log_path.exists()):
                continue
            for line in worker.log_path.read_text(errors="replace").splitlines():
                if "consumer: committed" in line:
                    for begin, end in span.findall(line):
                        if (begin == "None" or int(begin) <= offset) and offset < int(end):
                            when = line[1:24]
                            trail.append(f"{worker.name} {when} committed {name} "
                                         f"{begin}->{end} {line[line.index('generation'):][:14]}")
                elif "consumer: " in line and name in line:
                    trail.append(f"{worker.name} {line[:200]}")
        return trail[:limit] or [f"no worker log mentions {name} around {offset}"]

    def stop_all(self) -> None:
        """Stop every worker and print its log's warnings and errors and the end of it
        (shown when a test fails)."""
        for worker in self.started:
            worker.stop()
        for worker in self.started:
            if worker.log_path and worker.log_path.exists():
                lines = worker.log_path.read_text(errors="replace").splitlines()
                noted = [line for line in lines if _NOTABLE.search(line)]
                print(f"---- {worker.name}: {len(noted)} warning or error line(s) of "
                      f"{worker.log_path} (the last {NOTABLE_LINES}) ----")
                print("\n".join(noted[-NOTABLE_LINES:]))
                print(f"---- {worker.name} log tail ----")
                print("\n".join(lines[-15:]))


@pytest.fixture
def workers(broker: Broker, rabbit_url: str, vhosts: VirtualHosts,
            tmp_path: Path) -> Iterator[WorkerFactory]:
    """Return a factory of workers on ``broker``; all are stopped after the test."""
    vhost_url = vhosts.take()
    try:
        factory = WorkerFactory(broker, rabbit_url, tmp_path, vhost_url)
        yield factory
        factory.stop_all()
    finally:
        vhosts.give_back(vhost_url)
