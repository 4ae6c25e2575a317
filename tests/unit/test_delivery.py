"""The drain loop's handover: inline when it does not wait, under Faust's guard when it does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from mode import Service

from agents.delivery import GUARDED, hand_over


class Guard:
    """Faust's guard (``Service.wait_first`` against the flow's suspension), counting calls."""

    def __init__(self) -> None:
        self.service = Service()
        self.suspend_flow = asyncio.Event()
        self.calls = 0

    def __call__(self, rest: Awaitable[Any]) -> Awaitable[Any]:
        self.calls += 1
        return self.service.wait_first(rest, self.suspend_flow.wait())


def guarded() -> float:
    return GUARDED._value.get()


async def test_a_handover_that_does_not_wait_runs_inline_without_the_guard() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    guard = Guard()
    before = guarded()
    await hand_over(queue.put(1), guard)
    await hand_over(queue.put(2), guard)
    assert [queue.get_nowait(), queue.get_nowait()] == [1, 2]
    assert guard.calls == 0
    assert guarded() == before


async def test_a_handover_that_waits_is_finished_under_the_guard() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)
    guard = Guard()
    before = guarded()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, queue.get_nowait)  # room, a moment later
    await hand_over(queue.put(2), guard)
    assert queue.get_nowait() == 2
    assert guard.calls == 1
    assert guarded() == before + 1


async def test_a_waiting_handover_is_abandoned_when_the_flow_is_suspended() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)
    guard = Guard()
    cleaned_up = []

    async def handover() -> None:
        try:
            await queue.put(2)
        finally:
            cleaned_up.append(True)

    asyncio.get_running_loop().call_later(0.01, guard.suspend_flow.set)
    await hand_over(handover(), guard)
    for _ in range(3):  # the guard cancels the rest and returns, as Faust's did with its task
        await asyncio.sleep(0)
    assert cleaned_up == [True]
    assert queue.qsize() == 1 and queue.get_nowait() == 1
    queue.put_nowait(3)  # the abandoned put left no waiter behind
    assert queue.get_nowait() == 3


async def test_a_handover_can_wait_several_times_and_yield_bare() -> None:
    steps = []

    async def handover() -> str:
        steps.append("start")
        await asyncio.sleep(0)  # a bare yield
        steps.append("yielded")
        await asyncio.sleep(0.005)  # a future
        steps.append("slept")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "done")
        steps.append(await future)
        return "returned"

    guard = Guard()
    await hand_over(handover(), guard)
    assert steps == ["start", "yielded", "slept", "done"]
    assert guard.calls == 1


async def test_an_error_of_the_handover_propagates_inline_and_under_the_guard() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("later")

    with pytest.raises(ValueError, match="at once"):
        await hand_over(fails_at_once(), Guard())
    with pytest.raises(KeyError, match="later"):
        await hand_over(fails_later(), Guard())


async def test_an_error_of_the_awaited_future_is_raised_inside_the_handover() -> None:
    caught = []

    async def handover() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_exception, OSError("broken"))
        try:
            await future
        except OSError as exc:
            caught.append(str(exc))

    await hand_over(handover(), Guard())
    assert caught == ["broken"]


async def test_an_awaitable_that_is_not_a_coroutine_goes_to_the_guard_whole() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(7)
    guard = Guard()
    await hand_over(future, guard)
    assert guard.calls == 1


async def test_a_handover_abandoned_as_a_lock_is_handed_to_it_passes_the_lock_on() -> None:
    """The rest of an abandoned handover is cancelled as its task would be: a lock handed to
    it in the moment it is cancelled goes on to the next waiter (asyncio.Lock passes it on
    when CancelledError reaches its acquire; closing the coroutine instead left the next
    waiter waiting for ever)."""
    lock = asyncio.Lock()
    await lock.acquire()
    got_it = []
    rests: list[asyncio.Future[Any]] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def guard(rest: Awaitable[Any]) -> Awaitable[Any]:
        rests.append(asyncio.ensure_future(rest))  # as wait_first does
        return never

    async def handover(name: str) -> None:
        async with lock:
            got_it.append(name)

    first = asyncio.create_task(hand_over(handover("abandoned"), guard))
    await asyncio.sleep(0.01)  # the first waits for the lock, under the guard
    second = asyncio.create_task(handover("next"))
    await asyncio.sleep(0.01)
    lock.release()  # handed to the first waiter...
    rests[0].cancel()  # ...as the guard gives up on it, before it ran again
    await asyncio.wait_for(second, timeout=1.0)
    assert got_it == ["next"]
    assert not lock.locked()
    assert rests[0].cancelled()
    first.cancel()
