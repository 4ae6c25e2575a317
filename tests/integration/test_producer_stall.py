"""A produce request the broker never answers, against the real broker and client.

aiokafka keeps one produce request in flight per broker, so while one goes unanswered every
later message waits behind it. The client gives up on the answer after its request timeout
and closes the connection, and sends the batches again only if they are younger than that
same timeout: with one short timeout the messages fail, with Faust's 20 minutes the worker's
sends wait 20 minutes. The shop shortens only the answer's (``SHOP_PRODUCER_REQUEST_TIMEOUT``,
40 s unless set: ``runtime.transport.answer_within``), and its producer reads the age of the
oldest waiting batch to say so in its log.

A proxy between the client and Tansu passes everything through but drops the broker's answer
to one produce request (a lost reply, as a half-open connection gives).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import RequestTimedOutError

from runtime.transport import answer_within, waiting_batches
from scripts.devstack import free_port, start_tansu

pytestmark = pytest.mark.integration

PRODUCE = 0  # the Kafka API key of a produce request
TIMEOUT_S = 4.0
FAUST_REQUEST_TIMEOUT_MS = 1_200_000
TOPIC = "stall"  # two partitions


class DropOneProduceAnswer:
    """A TCP proxy to ``upstream`` that drops the answer to the first produce request sent
    once :attr:`armed` is set (Kafka frames: a 4-byte size, then for a request its API key,
    version and correlation id, for an answer the correlation id)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.armed = False
        self.dropped: list[int] = []
        self._to_drop: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers += [writer, up_writer]
        for pump in (self._pump(reader, up_writer, self._request),
                     self._pump(up_reader, writer, self._answer)):
            task = asyncio.ensure_future(pump)
            self._tasks.add(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    passes: Callable[[bytes], bool]) -> None:
        """Copy Kafka frames from ``reader`` to ``writer``, those ``passes`` lets through."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", size)[0])
                if passes(frame):
                    writer.write(size + frame)
                    await writer.drain()
        writer.close()

    def _request(self, frame: bytes) -> bool:
        """Pass every request; note the first produce request once armed."""
        api_key, _version, correlation = struct.unpack(">hhi", frame[:8])
        if self.armed and api_key == PRODUCE and self._to_drop is None:
            self._to_drop = correlation
        return True

    def _answer(self, frame: bytes) -> bool:
        """Pass every answer but the one to the noted produce request."""
        (correlation,) = struct.unpack(">i", frame[:4])
        if correlation == self._to_drop and not self.dropped:
            self.dropped.append(correlation)
            return False
        return True


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[DropOneProduceAnswer, str]]:
    """Tansu behind a :class:`DropOneProduceAnswer`, advertising the proxy's port, so that
    every connection a client makes goes through it, and TOPIC made. Yield the proxy and the
    bootstrap address (the proxy's)."""
    advertised = free_port()
    broker = start_tansu(log_path=tmp_path / "tansu.log", advertised_port=advertised)
    proxy = DropOneProduceAnswer(("127.0.0.1", broker.port))
    try:
        await proxy.start(advertised)
        bootstrap = f"127.0.0.1:{advertised}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        yield proxy, bootstrap
    finally:
        await proxy.stop()
        broker.stop()


async def test_one_short_timeout_fails_the_message_whose_answer_was_lost(
        proxied: tuple[DropOneProduceAnswer, str]) -> None:
    proxy, bootstrap = proxied
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1,
                                request_timeout_ms=int(TIMEOUT_S * 1000), linger_ms=5)
    await producer.start()
    try:
        await (await producer.send(TOPIC, b"warm-up", partition=0))
        proxy.armed = True
        first = await producer.send(TOPIC, b"first", partition=0)
        with pytest.raises(RequestTimedOutError):
            await asyncio.wait_for(first, timeout=TIMEOUT_S * 3)
        assert proxy.dropped
    finally:
        await producer.stop()


async def test_an_unanswered_produce_request_holds_later_sends_until_the_timeout(
        proxied: tuple[DropOneProduceAnswer, str]) -> None:
    proxy, bootstrap = proxied
    # As the shop's producer makes it: Faust's 20 minutes for a message, TIMEOUT_S for an
    # answer. (Tansu refuses the idempotent producer's InitProducerId, which would make the
    # resend exact.)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1,
                                request_timeout_ms=FAUST_REQUEST_TIMEOUT_MS, linger_ms=5)
    answer_within(producer, TIMEOUT_S)
    await producer.start()
    try:
        await (await producer.send(TOPIC, b"warm-up", partition=0))
        proxy.armed = True
        began = time.monotonic()
        first = await producer.send(TOPIC, b"first", partition=0)
        await asyncio.sleep(0.5)
        later = await producer.send(TOPIC, b"later", partition=1)  # another partition
        await asyncio.sleep(1.0)
        count, age = waiting_batches(producer._message_accumulator._batches, time.monotonic())
        assert proxy.dropped, "the proxy saw no produce request to drop"
        assert count == 1 and age >= 0.9, (count, age)  # "later" waits behind "first"
        assert not later.done()
        await asyncio.wait_for(asyncio.gather(first, later), timeout=TIMEOUT_S * 3)
        waited = time.monotonic() - began
        assert TIMEOUT_S <= waited < TIMEOUT_S * 3, waited
        assert waiting_batches(producer._message_accumulator._batches, time.monotonic()) \
            == (0, 0.0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {b"first", b"later"} <= set(values):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
        # "first" is on the broker once or twice: it was written, its answer lost, and sent
        # again on a new connection (at least once).
        assert values.count(b"later") == 1 and 1 <= values.count(b"first") <= 2, values
    finally:
        await consumer.stop()
