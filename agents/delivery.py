"""Handing a fetched record to the streams without a task per record, unless it must wait.

Faust's drain loop hands each record to the streams as
``await self.wait_first(callback(message), self.suspend_flow.wait())``: four tasks (the
handover, the flow's suspension, the consumer's stop and crash), an ``asyncio.wait`` and
three cancellations, for a handover that almost never waits (it waits only while the flow is
stopped for a rebalance, a stream's buffer is full, or the producer's buffer is). That is
27 µs a record in a quiet loop here, against ~80 µs for everything a bare Faust agent does
with a record.

:func:`hand_over` runs the handover inline up to its first suspension. A handover that does
not suspend is done then, with no task. One that suspends is finished under Faust's guard as
before (:class:`Rest`, driven by a task exactly as the handover's own task would have driven
it), so a rebalance still abandons a handover that waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from prometheus_client import Counter

__all__ = ["GUARDED", "Rest", "hand_over"]

GUARDED = Counter(
    "shop_consumer_guarded_handovers_total",
    "Records whose handover to the streams had to wait (a stopped flow, a full buffer) and "
    "was finished under Faust's guard instead of inline",
)

Guard = Callable[[Awaitable[Any]], Awaitable[Any]]


async def hand_over(handover: Awaitable[Any], guard: Guard) -> None:
    """Run ``handover`` inline; if it suspends, finish it as ``await guard(rest)``.

    ``guard`` is Faust's ``lambda rest: self.wait_first(rest, self.suspend_flow.wait())``:
    it waits for the rest of the handover or for the flow to be suspended, whichever comes
    first, and cancels the other. An exception of the handover propagates either way. An
    awaitable that is not a coroutine goes to the guard whole.
    """
    if not isinstance(handover, Coroutine):
        GUARDED.inc()
        await guard(handover)
        return
    try:
        awaiting = handover.send(None)
    except StopIteration:
        return
    GUARDED.inc()
    await guard(Rest(handover, awaiting))


class Rest:
    """The rest of a coroutine that suspended on ``awaiting`` (what its last step yielded: a
    future, or None for a bare yield), to be awaited in a task: the task drives it exactly as
    it would have driven the coroutine from the start (``yield from`` by hand). The task waits
    on the very future the coroutine waits on, and a cancellation reaches the coroutine as
    CancelledError at its own await (so an ``asyncio.Lock`` handed to it at that moment goes
    on to the next waiter, as it does for a cancelled task).
    """

    __slots__ = ("awaiting", "coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], awaiting: Any) -> None:
        self.coro = coro
        self.awaiting = awaiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, awaiting = self.coro, self.awaiting
        while True:
            try:
                yield awaiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: a cancellation
                try:
                    awaiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    awaiting = coro.send(None)
                except StopIteration as stop:
                    return stop.value
