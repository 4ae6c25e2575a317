"""The producer buffer's flush waits for every buffered message, and the producer says when
messages wait long in its client (runtime/transport.py).

A commit trusts the flush: offsets are committed once it returns. Faust's own buffer gives up
after 0.1 s without progress, so a slow send (a loaded machine, a broker that answers late)
lets a commit pass changelog records still in the buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from runtime.transport import (
    STALL_REPEAT_S,
    STALL_WARN_S,
    DrainingProducerBuffer,
    ShopProducer,
    waiting_batches,
)

SEND_S = 0.25


class SlowSends:
    """Each message takes SEND_S to be handed over; the ones handed over are kept."""

    sent: list[Any]

    async def _send_pending(self, fut: Any) -> None:
        await asyncio.sleep(SEND_S)
        self.sent.append(fut)


class SlowFaustBuffer(SlowSends, ProducerBuffer):
    """Faust's buffer with slow sends."""


class SlowShopBuffer(SlowSends, DrainingProducerBuffer):
    """The shop's buffer with slow sends."""


async def started(buffer: Any) -> Any:
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    buffer.sent = []
    await buffer.start()
    return buffer


async def test_faust_s_own_flush_returns_with_messages_still_buffered() -> None:
    buffer = await started(SlowFaustBuffer())
    try:
        for n in range(3):
            buffer.put(n)
        await buffer.flush()
        assert buffer.size > 0 or len(buffer.sent) < 3  # the bug this module works around
    finally:
        buffer.pending = asyncio.Queue()  # Faust's stop refuses a buffer with messages
        await buffer.stop()


async def test_flush_returns_once_every_message_put_before_it_is_sent() -> None:
    buffer = await started(SlowShopBuffer())
    try:
        for n in range(3):
            buffer.put(n)
        began = time.monotonic()
        await buffer.flush()
        assert buffer.sent == [0, 1, 2]
        assert time.monotonic() - began >= 2 * SEND_S
    finally:
        await buffer.stop()


async def test_messages_put_during_a_flush_do_not_hold_it_up() -> None:
    buffer = await started(SlowShopBuffer())
    try:
        buffer.put("before")
        flushing = asyncio.create_task(buffer.flush())
        await asyncio.sleep(0)
        for n in range(4):
            buffer.put(n)
        await flushing
        assert buffer.sent[0] == "before"
        assert len(buffer.sent) < 5
    finally:
        await buffer.stop()


async def test_a_stopping_buffer_sends_what_it_still_holds() -> None:
    buffer = await started(SlowShopBuffer())
    for n in range(3):
        buffer.put(n)
    await buffer.stop()
    assert sorted(buffer.sent) == [0, 1, 2]


async def test_an_empty_buffer_flushes_at_once() -> None:
    buffer = await started(SlowShopBuffer())
    try:
        began = time.monotonic()
        await buffer.flush()
        assert time.monotonic() - began < SEND_S
    finally:
        await buffer.stop()


def _client(ages: dict[str, list[float]], now: float, in_flight: set[int]) -> Any:
    """An aiokafka producer's parts the watch reads: a deque of batches a partition (by their
    creation time), the sender's brokers with a request in flight, the request timeout."""
    batches = {tp: [SimpleNamespace(_ctime=now - age) for age in queue]
               for tp, queue in ages.items()}
    return SimpleNamespace(_message_accumulator=SimpleNamespace(_batches=batches),
                           _sender=SimpleNamespace(_in_flight=in_flight),
                           client=SimpleNamespace(_request_timeout_ms=40_000))


def test_waiting_batches_counts_every_batch_and_ages_the_oldest_first_one() -> None:
    client = _client({"orders-0": [3.0, 1.0], "orders-1": [], "stock-2": [7.5]}, 100.0, set())
    assert waiting_batches(client._message_accumulator._batches, 100.0) == (3, 7.5)
    assert waiting_batches({}, 100.0) == (0, 0.0)


def test_the_watch_warns_once_a_batch_waits_too_long_and_not_on_every_look(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = SimpleNamespace(_stall_warned=0.0)
    look = ShopProducer.look_at_waiting
    with caplog.at_level(logging.WARNING, logger="runtime.transport"):
        look(watch, _client({"orders-0": [STALL_WARN_S - 1]}, 1000.0, set()), 1000.0)
        assert not caplog.records
        look(watch, _client({"orders-0": [STALL_WARN_S + 1], "orders-1": [1.0]}, 1000.0, {0}),
             1000.0)
        look(watch, _client({"orders-0": [STALL_WARN_S + 6]}, 1005.0, {0}), 1005.0)
        assert len(caplog.records) == 1
        assert "2 batch(es)" in caplog.text and "for 11 s" in caplog.text
        assert "broker(s) [0]" in caplog.text and "SHOP_PRODUCER_REQUEST_TIMEOUT=40" in caplog.text
        look(watch, _client({"orders-0": [STALL_WARN_S + 1 + STALL_REPEAT_S]},
                            1000.0 + STALL_REPEAT_S, {0}), 1000.0 + STALL_REPEAT_S)
        assert len(caplog.records) == 2
        look(watch, _client({}, 1100.0, set()), 1100.0)  # flowing again: the next stall warns
        look(watch, _client({"orders-0": [STALL_WARN_S]}, 1101.0, {0}), 1101.0)
        assert len(caplog.records) == 3


async def test_the_worker_s_client_answers_within_the_setting_and_keeps_faust_s_delivery_time(
        ) -> None:
    from app import app

    client = app.producer._new_producer()
    try:
        assert client.client._request_timeout_ms == app.settings.producer_request_timeout * 1000
        assert client._sender._request_timeout_ms == client.client._request_timeout_ms
        assert client._message_accumulator._batch_ttl == app.conf.producer_request_timeout
        assert app.conf.producer_request_timeout == 1200.0
    finally:
        await client.stop()  # never started: nothing to close but the object
