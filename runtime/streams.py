"""Batches of a Faust stream without a linger: what arrived while the last batch was handled.

Faust's ``Stream.take_events(max_, within)`` yields a batch when ``max_`` events are buffered
or when ``within`` seconds have passed, whichever comes first. Below saturation that is a
fixed linger: a lone event waits ``within`` before its agent sees it, and an idle agent
wakes every ``within`` to find nothing. :func:`take_ready` is the same generator with the
other wait of group commit: a batch is handed over as soon as the stream holds an event,
with every event that reached the stream meanwhile (while the previous batch was being
handled, or in the same fetch), up to ``max_``. At low load a batch is one event, handled at
once; under load batches grow by themselves, as far as the consumer has handed the events
to the stream (docs/benchmarks.md has the batches measured).

Everything else is Faust's: a processor fills the buffer from the stream's passive drainer,
the stream's own acknowledgement is off while the generator runs, and a batch's events are
acknowledged once the caller asks for the next batch (so an offset is committed only after
the batch that holds it was handled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from faust.types import EventT, StreamT
from mode.utils.aiter import aiter
from mode.utils.futures import notify

__all__ = ["take_ready"]


def take_ready(stream: StreamT[Any], max_: int) -> AsyncGenerator[list[EventT], None]:
    """Yield the events of ``stream`` in batches of at most ``max_``, each as soon as there is
    one (see the module's text). Faust's ``take_events`` with the linger taken out."""
    s = cast(Any, stream)
    gen = _take_ready(s, max_)
    s._active_agens.add(gen)  # closed by Stream.on_stop, as Faust's own take generators
    return gen


async def _take_ready(s: Any, max_: int) -> AsyncGenerator[list[EventT], None]:
    buffer: list[Any] = []
    events: list[EventT] = []
    buffer_ready = asyncio.Event()  # the buffer holds an event
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    enable_acks: bool = s.enable_acks
    channel_it = aiter(s.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer.append(value)
            event = s.current_event
            if event is None:
                raise RuntimeError("the take buffer found no current event")
            events.append(event)
            buffer_ready.set()
            if len(buffer) >= max_:
                buffer_consumed.clear()
                await s.wait(buffer_consumed)  # at most max_ a batch
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            s.log.exception("Error adding to take buffer: %r", exc)
            await s.crash(exc)
        return value

    s.enable_acks = False
    s.add_processor(add_to_buffer)
    s._enable_passive(channel_it)
    try:
        while not s.should_stop:
            await s.wait_for_stopped(buffer_ready)
            # The drainer moves the events the stream's queue already holds into the buffer,
            # one a turn of the event loop: let it, up to a full batch.
            queue = s.channel.queue
            turns = 0
            while len(buffer) < max_ and not queue.empty() and turns < 4 * max_:
                turns += 1
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # the last one taken from the queue joins too
            if not buffer:
                buffer_ready.clear()
                continue
            buffer_consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                buffer.clear()
                for event in events:
                    await s.ack(event)
                events.clear()
                notify(buffer_consuming)
                buffer_ready.clear()
                buffer_consumed.set()
    finally:
        s.enable_acks = enable_acks
        s._processors.remove(add_to_buffer)
