"""A private RabbitMQ node for tests that stop and start RabbitMQ (outages).

Stopping the machine's RabbitMQ would break every other test and developer using it, so an
outage test gets its own node: the Debian ``rabbitmq-server`` started with its own node name,
ports and folders, about 5 s to start.
``rabbitmqctl stop_app`` / ``start_app`` then make the outage.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from rabbit_bridge.topology import PROMOTIONS_EXCHANGE
from scripts.devstack import ensure_rabbitmq, free_port, port_open, wait_for

__all__ = ["PrivateRabbit", "bind_promotion_events", "private_rabbit", "promotion_events",
           "promotion_messages"]


class PrivateRabbit:
    """A RabbitMQ node of one test: its URL, and outages on demand."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"shoptest{uuid.uuid4().hex[:8]}@localhost"
        self.base = base
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        """Return the file the node writes its process id to once it runs."""
        return self.base / "node.pid"

    @property
    def env(self) -> dict[str, str]:
        """Return the variables that make rabbitmq-server and rabbitmqctl use this node."""
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }

    def start(self, attempts: int = 3) -> None:
        """Start the node and wait until it has booted and accepts connections.

        An open port alone proves nothing: another test process may take the free port
        between ``free_port()`` and the node's start (a worker's web server once answered the
        first AMQP connection with an HTTP 400) and the node then fails to boot. So wait for
        the node itself (``rabbitmqctl wait`` on its pid file fails if it dies while booting)
        and start it again on new ports if it did not come up.
        """
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "rabbitmq", "rabbitmq")
        for attempt in range(1, attempts + 1):
            self._run("rabbitmq-server", "-detached")
            try:
                self._ctl("wait", str(self.pid_file), "--timeout", "60")
                wait_for(lambda: port_open("127.0.0.1", self.port), 60,
                         f"private RabbitMQ {self.node} on port {self.port}", interval=0.3)
                return
            except RuntimeError:  # a command failed, or the port never opened (StackError)
                self.stop()
                if attempt == attempts:
                    raise
                self.port, self.dist_port = free_port(), free_port()
                self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node (clients lose their connections): the outage."""
        self._ctl("stop_app")

    def start_app(self) -> None:
        """Start RabbitMQ again on the node and wait for its port."""
        self._ctl("start_app")
        wait_for(lambda: port_open("127.0.0.1", self.port), 60,
                 f"private RabbitMQ {self.node} back on port {self.port}", interval=0.2)

    def stop(self) -> None:
        """Stop the node."""
        self._ctl("stop", check=False)

    def _ctl(self, *args: str, check: bool = True) -> None:
        self._run("rabbitmqctl", "-n", self.node, *args, check=check)

    def _run(self, *cmd: str, check: bool = True) -> None:
        result = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True,
                                text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")


@pytest.fixture
def private_rabbit(rabbit_url: str) -> Iterator[PrivateRabbit]:
    """Start a RabbitMQ node of this test's own (``rabbit_url`` installed the package).

    Its folders are outside pytest's private temporary folder, which the ``rabbitmq`` user
    may not enter.
    """
    ensure_rabbitmq(rabbit_url)
    base = Path(tempfile.mkdtemp(prefix="shoptest-rabbit-"))
    base.chmod(0o755)
    node = PrivateRabbit(base / "node")
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


async def bind_promotion_events(url: str) -> None:
    """Declare a durable queue that keeps every promotion event of the node at ``url``."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(PROMOTIONS_EXCHANGE,
                                                  aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("test.promotion-events", durable=True)
        await queue.bind(exchange, "promotion.#")


async def promotion_messages(url: str, expected: int,
                             within: float = 30.0) -> dict[str, dict[str, Any]]:
    """Return the distinct promotion events (message id -> body) that arrived, waiting until
    there are ``expected`` (a duplicate delivery has the same message id)."""
    found: dict[str, dict[str, Any]] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("test.promotion-events", durable=True)
        deadline = time.monotonic() + within
        while len(found) < expected and time.monotonic() < deadline:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            assert message.message_id
            found[message.message_id] = json.loads(message.body)
    return found


async def promotion_events(url: str, expected: int, within: float = 30.0) -> Counter[str]:
    """Return how many distinct promotion events (by message id) of each kind arrived."""
    found = await promotion_messages(url, expected, within)
    return Counter(body["type"] for body in found.values())
