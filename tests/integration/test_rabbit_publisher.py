"""The publisher loses nothing across a RabbitMQ outage and keeps each routing key's order."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest

from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.outbox import Outbox
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.topology import TASKS_EXCHANGE
from tests.integration.rabbit import PrivateRabbit

pytestmark = pytest.mark.integration

QUEUE = "test.publisher"
KEYS = ("alpha", "beta", "gamma")


async def bind_test_queue(url: str) -> None:
    """Declare a durable queue bound to the tasks exchange for every test key."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(TASKS_EXCHANGE, aio_pika.ExchangeType.DIRECT,
                                                  durable=True)
        queue = await channel.declare_queue(QUEUE, durable=True)
        for key in KEYS:
            await queue.bind(exchange, key)


async def drain(url: str, expected: int, within: float = 30.0) -> list[dict[str, object]]:
    """Return the bodies of the messages in the test queue, waiting for ``expected`` distinct
    message ids (a publisher that lost a confirm in an outage sends a message again: the copy
    has the same id, and does not count)."""
    received: list[dict[str, object]] = []
    ids: set[object] = set()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(QUEUE, durable=True)
        deadline = asyncio.get_running_loop().time() + within
        while len(ids) < expected and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            received.append({**json.loads(message.body), "_id": message.message_id})
            ids.add(message.message_id)
            await message.ack()
    return received


async def test_an_outage_loses_nothing_and_keeps_order(private_rabbit: PrivateRabbit,
                                                       tmp_path: Path) -> None:
    await bind_test_queue(private_rabbit.url)
    connection = RabbitConnection(private_rabbit.url)
    publisher = RabbitPublisher(connection, tmp_path / "outbox.sqlite3")
    await connection.start()
    await publisher.start()
    sent = 0
    try:
        async def publish(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                key = KEYS[sent % len(KEYS)]
                publisher.publish(TASKS_EXCHANGE, key, {"n": sent, "key": key})
                sent += 1
                await asyncio.sleep(0.002)

        await publish(300)
        private_rabbit.stop_app()
        await publish(300)  # RabbitMQ is down: these go to the outbox
        assert await publisher.flush(10)
        assert publisher.outbox_depth > 0, "messages published during the outage were kept"
        private_rabbit.start_app()
        await publish(300)
        await asyncio.wait_for(_delivered(publisher), 60)
    finally:
        await publisher.stop()
        await connection.stop()

    received = await drain(private_rabbit.url, sent)
    unique = {m["_id"]: m for m in received}
    numbers = sorted(int(m["n"]) for m in unique.values())  # type: ignore[call-overload]
    print(f"published {sent}, received {len(received)} ({len(received) - len(unique)} "
          "duplicates with a known id)")
    assert numbers == list(range(sent)), "every message arrived"
    by_key: dict[str, list[int]] = defaultdict(list)
    for message in received:
        by_key[str(message["key"])].append(int(message["n"]))  # type: ignore[call-overload]
    for key, ns in by_key.items():
        first_seen = list(dict.fromkeys(ns))
        assert first_seen == sorted(first_seen), f"routing key {key} kept its order"


async def test_the_outbox_survives_a_restart_and_is_delivered(private_rabbit: PrivateRabbit,
                                                              tmp_path: Path) -> None:
    await bind_test_queue(private_rabbit.url)
    private_rabbit.stop_app()
    path = tmp_path / "outbox.sqlite3"
    connection = RabbitConnection(private_rabbit.url)
    publisher = RabbitPublisher(connection, path)
    await connection.start()
    await publisher.start()
    for n in range(50):
        publisher.publish(TASKS_EXCHANGE, "alpha", {"n": n, "key": "alpha"})
    await publisher.stop()  # the worker stops while RabbitMQ is down
    await connection.stop()
    kept = Outbox(path)
    assert kept.depth == 50
    kept.close()

    private_rabbit.start_app()
    connection = RabbitConnection(private_rabbit.url)
    publisher = RabbitPublisher(connection, path)
    await connection.start()
    await publisher.start()  # the next run delivers what the last one kept
    try:
        await asyncio.wait_for(_until(lambda: publisher.outbox_depth == 0), 30)
    finally:
        await publisher.stop()
        await connection.stop()
    received = await drain(private_rabbit.url, 50)
    assert [m["n"] for m in received] == list(range(50))


async def _delivered(publisher: RabbitPublisher) -> None:
    """Wait until nothing is in flight and the outbox is empty, both at once.

    An empty outbox is not enough: a publish in flight that RabbitMQ does not confirm (the
    connection reset just after a restart) goes back to the outbox, and ``flush`` returns
    once every message is confirmed *or* in the outbox.
    """
    while True:
        if await publisher.flush(10) and publisher.outbox_depth == 0:
            return
        await asyncio.sleep(0.05)


async def _until(predicate: Callable[[], bool]) -> None:
    while True:
        if predicate():
            return
        await asyncio.sleep(0.05)
