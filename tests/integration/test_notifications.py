"""Notifications on a real worker: a welcome on an open stream, the list, marking read,
resuming with Last-Event-ID, a duplicated source event, who may read what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.integration.fixtures import WorkerFactory
from tests.integration.notify import SseClient, call, private_rabbit, register, start, until
from tests.integration.shop import ADMIN, bearer, customer

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbit(workers: WorkerFactory) -> Iterator[str]:
    """Return a private RabbitMQ vhost's URL (the shared broker's queues see other runs)."""
    yield from private_rabbit(workers)


async def test_a_welcome_arrives_on_the_stream_and_in_the_list(workers: WorkerFactory,
                                                               rabbit: str) -> None:
    worker = await start(workers, SHOP_RABBIT_URL=rabbit)
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        user_id = await register(http, worker.url, "welcome@example.com")
        me = customer(user_id)
        async with SseClient(http, worker.url, me, last_event_id="0") as stream:
            # Generous: how fast it comes is a figure (printed), the machine's load decides it.
            name, data, event_id = await stream.next(within=15.0)
            latency = time.monotonic() - started
        print(f"welcome on the SSE stream {latency * 1000:.0f} ms after POST /api/users")
        assert (name, data["kind"], event_id) == ("welcome", "welcome", "1")

        page = await until(http, worker.url + "/api/notifications", me,
                           lambda s, b: s == 200 and b["total"] == 1)
        assert page["unread"] == 1 and page["items"][0]["title"].startswith("Welcome")
        note_id = page["items"][0]["id"]

        # Marking read goes through the topic; another user cannot mark it (404, as absent).
        status, answer = await call(http, "POST", worker.url + f"/api/notifications/{note_id}/read",
                                    customer("someone-else"))
        assert status == 404 and answer["error"]["code"] == "not_found", answer
        status, answer = await call(http, "POST", worker.url + f"/api/notifications/{note_id}/read",
                                    me)
        assert (status, answer) == (200, {"id": note_id, "read": True})
        await until(http, worker.url + "/api/notifications", me,
                    lambda s, b: s == 200 and b["unread"] == 0 and b["items"][0]["read"])

        # Someone else's list never shows it; anonymous is refused; a plain GET of the stream
        # is refused with 406.
        status, other = await call(http, "GET", worker.url + "/api/notifications",
                                   customer("someone-else"))
        assert status == 200 and other["total"] == 0
        status, _ = await call(http, "GET", worker.url + "/api/notifications", {})
        assert status == 401
        status, answer = await call(http, "GET", worker.url + "/api/notifications/stream", me)
        assert status == 406 and answer["error"]["code"] == "not_acceptable"


async def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    workers: WorkerFactory, rabbit: str,
) -> None:
    worker = await start(workers, SHOP_RABBIT_URL=rabbit)
    bootstrap = workers.broker.bootstrap
    async with aiohttp.ClientSession() as http:
        user_id = await register(http, worker.url, "resume@example.com")
        me = customer(user_id)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            async def notice(n: int) -> None:
                event = order_notice(user_id, f"resume-{n}")
                await producer.send_and_wait("orders", event, key=b"o-%d" % n)

            seen: list[str] = []
            async with SseClient(http, worker.url, me, last_event_id="0") as stream:
                seen.append((await stream.next())[2])  # the welcome
                for n in range(5):
                    await notice(n)
                while len(seen) < 4:
                    seen.append((await stream.next())[2])
            # Disconnected after id 4: more notices arrive meanwhile.
            for n in range(5, 10):
                await notice(n)
            await until(http, worker.url + "/api/notifications", me,
                        lambda s, b: s == 200 and b["total"] == 11)
            async with SseClient(http, worker.url, me, last_event_id=seen[-1]) as stream:
                while len(seen) < 11:
                    seen.append((await stream.next())[2])
                await notice(10)
                seen.append((await stream.next())[2])
                with pytest.raises(TimeoutError):
                    await stream.next(within=1.0)  # nothing more, nothing twice
        finally:
            await producer.stop()
    assert seen == [str(n) for n in range(1, 13)]


def order_notice(user_id: str, event_id: str) -> bytes:
    """Return an ``order_shipped`` notice as the saga writes it."""
    import json

    return json.dumps({
        "type": "order_shipped", "event_id": event_id,
        "occurred_at": "2026-11-25T12:00:00+00:00", "correlation_id": "",
        "schema_version": 1, "order_id": f"order-{event_id}", "user_id": user_id,
        "status": "shipped", "total_cents": 1000, "reason": ""}).encode()


async def test_a_duplicated_source_event_notifies_once(workers: WorkerFactory,
                                                       rabbit: str) -> None:
    worker = await start(workers, SHOP_RABBIT_URL=rabbit)
    async with aiohttp.ClientSession() as http:
        user_id = await register(http, worker.url, "dupe@example.com")
        me = customer(user_id)
        producer = AIOKafkaProducer(bootstrap_servers=workers.broker.bootstrap)
        await producer.start()
        try:
            raw = order_notice(user_id, "dupe-1")
            for _ in range(3):  # the same bytes appended three times
                await producer.send_and_wait("orders", raw, key=b"order-dupe")
            await producer.send_and_wait("orders", order_notice(user_id, "dupe-2"),
                                         key=b"order-dupe")
        finally:
            await producer.stop()
        page = await until(http, worker.url + "/api/notifications", me,
                           lambda s, b: s == 200 and b["total"] >= 3)
        await asyncio.sleep(1.0)
        _, page = await call(http, "GET", worker.url + "/api/notifications", me)
        kinds = [item["kind"] for item in page["items"]]
        assert sorted(kinds) == ["order_shipped", "order_shipped", "welcome"], page
        assert [item["seq"] for item in page["items"]] == [3, 2, 1]

        # An admin sees the admins' alerts row too (empty or not, it is there).
        status, admin_page = await call(http, "GET", worker.url + "/api/notifications", ADMIN)
        assert status == 200 and admin_page["alerts"] is not None, admin_page
        status, _ = await call(http, "GET", worker.url + "/api/notifications?scope=admins", me)
        assert status == 403


async def consume_all(bootstrap: str, topic: str) -> list[Any]:
    """Return every message now on ``topic`` (for debugging failed runs)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=1000)
        return [m for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()


async def test_two_workers_stream_from_the_owner_and_support_answers_notify(
    workers: WorkerFactory, rabbit: str,
) -> None:
    first = await start(workers, "w1", SHOP_RABBIT_URL=rabbit)
    second = await start(workers, "w2", SHOP_RABBIT_URL=rabbit)
    await asyncio.to_thread(first.wait_ready)
    async with aiohttp.ClientSession() as http:
        user_id = await register(http, first.url, "two@example.com")
        me = customer(user_id)
        # Either worker answers the stream: the owner serves it, the other relays it.
        for worker in (first, second):
            async with SseClient(http, worker.url, me, last_event_id="0") as stream:
                name, data, event_id = await stream.next(within=10.0)
                assert (name, event_id) == ("welcome", "1"), (worker.name, data)
        async with SseClient(http, second.url, me, last_event_id="1") as stream:
            status, ticket = await call(http, "POST", first.url + "/api/support/tickets", me,
                                        {"subject": "Where is it?", "body": "My parcel."})
            assert status == 201, ticket
            path = f"/api/support/tickets/{ticket['id']}"
            staff = bearer("agent-1", "support")
            await until(http, first.url + path, me, lambda s, _: s == 200)
            status, _ = await call(http, "POST", first.url + path + "/comments", me,
                                   {"body": "Any news?"})  # the customer's own: no notice
            assert status in (200, 201, 202)
            status, _ = await call(http, "POST", second.url + path + "/comments", staff,
                                   {"body": "On its way."})
            assert status in (200, 201, 202)
            status, _ = await call(http, "POST", first.url + path + "/resolve", staff,
                                   {"resolution": "Delivered."})
            assert status in (200, 201, 202)
            kinds = [(await stream.next(within=10.0))[0] for _ in range(2)]
        assert kinds == ["ticket_answered", "ticket_resolved"]
        page = await until(http, second.url + "/api/notifications", me,
                           lambda s, b: s == 200 and b["total"] == 3)
        assert page["unread"] == 3
