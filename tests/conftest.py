"""Shared test set-up: the in-process app uses memory tables and never needs a broker.

Integration fixtures (real Tansu, real RabbitMQ, real worker processes) are in
``tests/integration/fixtures.py``; unit tests never start a broker.

The suite runs on three processes (pytest-xdist, ``-n 3`` in setup.cfg): the tests that run
several workers, a browser or a bench at once (``HEAVY_FILES``) go one after another to one
process, so that no two of them share the machine's cores; the rest are spread over all
three. A worker's start is mostly waiting (Tansu holds a group join for 3 s), so on two
cores a third process uses what two leave idle (docs/operations.md, "Tests"). ``-n 0`` runs
everything in one process (and shows ``-s`` output).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# The in-process app (imported by unit tests) keeps tables in memory. Worker processes get
# their own settings from scripts.devstack and never inherit these.
os.environ["SHOP_STORE"] = "memory://"
os.environ["SHOP_ENVIRONMENT"] = "test"
# One data dir per test process (the RabbitMQ outbox file is in it).
os.environ.setdefault(
    "SHOP_DATADIR", f"var/test-data/{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")

pytest_plugins = ["tests.integration.fixtures", "tests.integration.rabbit"]

#: The tests that run one after another on one test process: several workers, a browser or a
#: bench at once (by file: the xdist controller schedules by node id, without markers).
HEAVY_FILES = ("tests/e2e/", "test_saga_crash.py", "test_two_workers.py", "test_bench.py",
               "test_schemathesis.py", "test_analytics_crash.py",
               "test_recommendation_eval.py")


def is_heavy(nodeid: str) -> bool:
    """Return True if the test ``nodeid`` is one of the heavy ones."""
    path = nodeid.split("::", 1)[0]
    return any(path.startswith(h) if h.endswith("/") else path.endswith(h) for h in HEAVY_FILES)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Schedule like ``--dist load``, except that the heavy tests are one unit of work."""
    from xdist.scheduler import LoadScopeScheduling

    class HeavyTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "heavy" if is_heavy(nodeid) else nodeid

    return HeavyTestsTogether(config, log)


_STARTED_RABBITMQ = pytest.StashKey[bool]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """With xdist, make sure RabbitMQ runs before the test processes start (once, here)."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return  # a test process, or no xdist: the rabbit_url fixture does it
    # Imported here: the fixtures module is a plugin (pytest_plugins), loaded for rewriting.
    from scripts.devstack import ensure_rabbitmq
    from tests.integration.fixtures import RABBIT_URL

    config.stash[_STARTED_RABBITMQ] = ensure_rabbitmq(
        RABBIT_URL, log=lambda line: print(f"[conftest] {line}"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the RabbitMQ that pytest_sessionstart started (none on a machine that had one)."""
    if session.config.stash.get(_STARTED_RABBITMQ, False):
        from scripts.devstack import stop_rabbitmq

        stop_rabbitmq()
